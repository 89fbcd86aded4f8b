"""The conflict exchange's waits and memory on their own (``registry/_conflicts.py``): no
sockets, exact times.

A loser's node sends each losing copy's state to the winner's node under a ref and waits
for the answer; ``ConflictOutbox`` says what to send again and what to give up, and
``ConflictInbox`` lets the winner's node take each ref once. Time starts at 0.0 and is
passed explicitly; deadlines are asserted exactly (the time of their cause plus the delay).
The outbox is ``ConflictOutbox()``'s defaults: 5 s of silence, doubling to 40 s, 4 silent
rounds, a state passed over 4 times.
"""

from __future__ import annotations

from distable.registry._conflicts import ConflictInbox, ConflictOutbox, Due

W = "w@127.0.0.1:1"
V = "v@127.0.0.1:2"


def test_an_answer_retires_its_state_and_moves_the_deadline_of_those_behind_it() -> None:
    out = ConflictOutbox()
    for ref in (1, 2, 3):
        out.sent(W, ref, now=0.0 + ref / 10, incarnation=7)
    assert out.next_deadline() == 0.1 + 5.0  # the oldest wait governs
    assert out.taken(W, 1, now=4.0) == (True, Due())
    assert out.next_deadline() == 4.0 + 5.0  # progress: the states behind are on their way
    assert out.taken(W, 1, now=4.5) == (False, Due())  # a repeated answer counts for nothing
    assert out.next_deadline() == 4.0 + 5.0
    assert out.handle_timer(8.9) == Due()
    assert out.taken(W, 2, now=8.9) == (True, Due())
    assert out.taken(W, 3, now=13.0) == (True, Due())
    assert len(out) == 0
    assert out.next_deadline() == float("inf")


def test_a_state_sent_before_one_that_was_answered_was_lost_and_is_sent_again_at_once() -> None:
    out = ConflictOutbox()
    for ref in (1, 2, 3, 4):
        out.sent(W, ref, now=0.0)
    # 3 answered before 1 and 2: the link is FIFO, so those two were lost (a link dropped).
    assert out.taken(W, 3, now=1.0) == (True, Due(resend=((W, 1), (W, 2))))
    assert out.waiting(W) == [4, 1, 2]  # in the order of their last send
    # 4 was sent before the resends of 1 and 2: its answer says nothing of them.
    assert out.taken(W, 4, now=1.5) == (True, Due())
    # Nor does 2's: it may answer 2's first send, which went before the resend of 1.
    assert out.taken(W, 2, now=2.0) == (True, Due())
    out.sent(W, 5, now=2.5)
    assert out.taken(W, 5, now=3.0) == (True, Due(resend=((W, 1),)))  # 5 went after the resend of 1
    assert out.waiting(W) == [1]


def test_a_state_whose_first_send_precedes_a_resend_is_not_taken_for_lost() -> None:
    # The winner's node is slow, not lossy: after a silent round every state was sent
    # again, and the answers to the first sends arrive. None of them shows a loss.
    out = ConflictOutbox()
    for ref in (1, 2, 3):
        out.sent(W, ref, now=0.0)
    assert out.handle_timer(5.0) == Due(resend=((W, 1), (W, 2), (W, 3)))
    assert out.taken(W, 2, now=6.0) == (True, Due())  # the first send of 2 follows only 1's first send
    assert out.waiting(W) == [1, 3]


def test_silence_sends_every_waiting_state_again_then_waits_twice_as_long_and_gives_up() -> None:
    out = ConflictOutbox()
    out.sent(W, 1, now=0.0)
    out.sent(W, 2, now=1.0)
    assert out.handle_timer(4.9) == Due()
    assert out.handle_timer(5.0) == Due(resend=((W, 1), (W, 2)))
    assert out.next_deadline() == 5.0 + 10.0
    assert out.handle_timer(15.0) == Due(resend=((W, 1), (W, 2)))
    assert out.next_deadline() == 15.0 + 20.0
    assert out.handle_timer(35.0) == Due(resend=((W, 1), (W, 2)))
    assert out.next_deadline() == 35.0 + 40.0
    assert out.handle_timer(75.0) == Due(resend=((W, 1), (W, 2)))
    assert out.next_deadline() == 75.0 + 40.0  # capped
    assert out.handle_timer(115.0) == Due(given_up=(1, 2))  # 4 silent rounds
    assert len(out) == 0
    assert out.next_deadline() == float("inf")


def test_an_answer_after_a_silent_round_starts_the_waits_over() -> None:
    out = ConflictOutbox()
    out.sent(W, 1, now=0.0)
    out.sent(W, 2, now=0.0)
    assert out.handle_timer(5.0) == Due(resend=((W, 1), (W, 2)))
    assert out.taken(W, 1, now=12.0) == (True, Due())
    assert out.next_deadline() == 12.0 + 5.0
    assert out.handle_timer(17.0) == Due(resend=((W, 2),))
    assert out.next_deadline() == 17.0 + 10.0


def test_a_state_the_winner_will_not_take_is_given_up_after_being_passed_over_four_times() -> None:
    out = ConflictOutbox()
    out.sent(W, 1, now=0.0)
    due = []
    for i, ref in enumerate(range(10, 15)):
        out.sent(W, ref, now=float(i))
        due.append(out.taken(W, ref, now=float(i)))
    assert due[:4] == [(True, Due(resend=((W, 1),)))] * 4
    assert due[4] == (True, Due(given_up=(1,)))
    assert len(out) == 0


def test_each_node_waits_on_its_own() -> None:
    out = ConflictOutbox()
    out.sent(W, 1, now=0.0)
    out.sent(V, 2, now=2.0)
    assert out.taken(V, 1, now=3.0) == (False, Due())  # 1 waits on W, not V
    assert out.handle_timer(5.0) == Due(resend=((W, 1),))
    assert out.next_deadline() == 2.0 + 5.0
    assert out.taken(V, 2, now=6.0) == (True, Due())
    assert out.waiting(W) == [1]
    assert out.waiting(V) == []


def test_a_winner_node_back_from_a_verdict_under_its_incarnation_gets_every_waiting_state_again() -> None:
    out = ConflictOutbox()
    out.sent(W, 1, now=0.0, incarnation=7)
    out.sent(W, 2, now=0.5, incarnation=7)
    out.peer_down(W, now=1.0)
    assert out.next_deadline() == 1.0 + 5.0
    assert out.handle_timer(5.9) == Due()
    assert out.peer_up(W, 7, now=3.0) == Due(resend=((W, 1), (W, 2)))
    assert out.next_deadline() == 3.0 + 5.0
    assert out.taken(W, 1, now=4.0) == (True, Due())
    assert out.taken(W, 2, now=4.0) == (True, Due())


def test_a_winner_node_down_for_good_or_back_as_a_new_incarnation_gives_its_states_up() -> None:
    out = ConflictOutbox()
    out.sent(W, 1, now=0.0, incarnation=7)
    out.sent(V, 2, now=0.0, incarnation=3)
    out.peer_down(W, now=1.0)
    out.peer_down(V, now=1.0)
    assert out.peer_up(V, 4, now=2.0) == Due(given_up=(2,))  # restarted: it holds nothing
    assert out.handle_timer(5.9) == Due()
    assert out.handle_timer(6.0) == Due(given_up=(1,))
    assert len(out) == 0
    assert out.peer_up(W, 7, now=7.0) == Due()


def test_a_peer_up_of_a_node_never_down_changes_nothing() -> None:
    out = ConflictOutbox()
    out.sent(W, 1, now=0.0, incarnation=7)
    assert out.peer_up(W, 7, now=1.0) == Due()
    assert out.next_deadline() == 0.0 + 5.0


def test_a_link_renewed_without_a_verdict_sends_every_waiting_state_again_at_once() -> None:
    """What went on the old link may be lost (a cut healed; the loser was paused): the
    states go again on the new one, and the waits start over, instead of at the end of
    a silence that has doubled meanwhile."""
    out = ConflictOutbox()
    out.sent(W, 1, now=0.0, incarnation=7)
    out.sent(W, 2, now=0.5, incarnation=7)
    assert out.handle_timer(5.0) == Due(resend=((W, 1), (W, 2)))
    assert out.next_deadline() == 5.0 + 10.0
    assert out.link_renewed(W, 7, now=6.0) == Due(resend=((W, 1), (W, 2)))
    assert out.next_deadline() == 6.0 + 5.0
    assert out.taken(W, 2, now=6.5) == (True, Due())  # 2's first send may be what it answers
    assert out.link_renewed(V, 3, now=7.0) == Due()  # nothing waits on V


def test_links_renewed_again_and_again_with_no_answer_do_not_keep_a_loser_frozen_for_ever() -> None:
    """Only an answer starts the silent rounds over: a link that keeps coming up and carries
    nothing (large frames black-holed, say) still ends in the give-up of rule 4."""
    out = ConflictOutbox()
    out.sent(W, 1, now=0.0, incarnation=7)
    assert out.handle_timer(5.0) == Due(resend=((W, 1),))  # round 1
    assert out.link_renewed(W, 7, now=6.0) == Due(resend=((W, 1),))
    assert out.handle_timer(11.0) == Due(resend=((W, 1),))  # round 2
    assert out.link_renewed(W, 7, now=12.0) == Due(resend=((W, 1),))
    assert out.handle_timer(17.0) == Due(resend=((W, 1),))  # round 3
    assert out.handle_timer(17.0 + 40.0) == Due(resend=((W, 1),))  # round 4
    assert out.handle_timer(57.0 + 40.0) == Due(given_up=(1,))
    assert len(out) == 0


def test_a_link_renewed_to_a_node_down_here_or_another_incarnation_of_it() -> None:
    out = ConflictOutbox()
    out.sent(W, 1, now=0.0, incarnation=7)
    out.sent(V, 2, now=0.0, incarnation=3)
    out.peer_down(W, now=1.0)
    assert out.link_renewed(W, 7, now=2.0) == Due()  # down here: its peer_up sends them
    assert out.peer_up(W, 7, now=2.1) == Due(resend=((W, 1),))
    assert out.link_renewed(V, 4, now=3.0) == Due(given_up=(2,))  # restarted: it holds nothing
    assert len(out) == 1


def test_the_inbox_takes_a_ref_once_per_sending_node() -> None:
    inbox = ConflictInbox()
    assert not inbox.has(W, 1)
    assert inbox.take(W, 1, now=0.0)
    assert inbox.has(W, 1)
    assert not inbox.take(W, 1, now=1.0)
    assert not inbox.has(V, 1)  # refs are per sending node
    assert inbox.take(V, 1, now=1.0)
    assert len(inbox) == 2


def test_the_inbox_remembers_a_ref_at_least_its_memory_and_forgets_it_later() -> None:
    inbox = ConflictInbox(memory=600.0)
    assert inbox.take(W, 1, now=0.0)
    assert inbox.take(W, 2, now=700.0)
    assert not inbox.take(W, 1, now=1199.0)  # within twice the memory: still there
    assert inbox.take(W, 3, now=1201.0)  # past it: the ones older than the memory go
    assert len(inbox) == 2
    assert inbox.take(W, 1, now=1202.0)


def test_the_inbox_keeps_at_most_its_limit_the_newest_half_when_it_is_reached() -> None:
    inbox = ConflictInbox(limit=10)
    for ref in range(10):
        assert inbox.take(W, ref, now=float(ref))
    assert inbox.take(W, 10, now=10.0)
    assert len(inbox) == 6  # the 5 newest, then 10
    assert not inbox.take(W, 9, now=11.0)
    assert inbox.take(W, 0, now=11.0)

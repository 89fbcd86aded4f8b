"""Unix domain sockets for the links between nodes on one host.

A link over a Unix domain socket skips the kernel's TCP/IP stack: a round trip costs
less than over loopback TCP, and Python deployments run one node per core, so many
links are between nodes on one host. Everything above the socket is the same: the
handshake (cookie, and TLS when configured), framing, batching, backpressure, closing,
one link per pair. This module only finds the paths and makes the sockets.

Rules:
    * The sockets live in one private folder per user: ``$XDG_RUNTIME_DIR/distable`` when
      that variable is set, else ``<tempdir>/distable-<uid>``, made with mode 0700. A
      folder that is a symlink, another user's, or open to other users is not used at all
      (neither to listen nor to dial): another user could plant a socket in it.
    * A node's socket is ``<folder>/<node name>.<netns>.sock``, ``<netns>`` naming the
      network namespace it runs in (Linux; nothing elsewhere): two namespaces that share a
      filesystem may each run a node called ``a@127.0.0.1:4370``, and each must reach its
      own. A name that does not make a safe file name, or a path past the OS's limit,
      becomes a hash of it (``<folder>/<hex>.sock``); both ends compute the same.
    * A socket file left by a node that died (SIGKILL) is replaced by the next node of
      that name once a connect to it is refused (nothing listens there); a socket that
      accepts is a live node's, and is left alone. A node removes its socket file when it
      stops, if the file is still the one it made.
    * A peer is on this host when its host is a loopback or the unspecified address,
      ``localhost``, or this node's own host: only then is its socket tried.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import ipaddress
import os
import re
import socket
import stat
import sys
import tempfile

#: The longest path ``bind`` takes (``sun_path`` less its NUL: 108 on Linux, 104 on BSDs).
MAX_PATH = 107 if sys.platform.startswith("linux") else 103

#: Characters kept as they are in a socket's file name (others make it a hash).
_SAFE_NAME = re.compile(r"[A-Za-z0-9@:._\[\]-]+")

#: Is there a Unix domain socket here at all (not on Windows' event loops)?
AVAILABLE = hasattr(socket, "AF_UNIX") and sys.platform != "win32"


def socket_dir() -> str:
    """The folder of this user's node sockets (it may not exist yet)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if os.path.isabs(runtime):
        return os.path.join(runtime, "distable")
    return os.path.join(tempfile.gettempdir(), f"distable-{os.geteuid()}")


def prepare_dir(path: str) -> str | None:
    """Make ``path`` (mode 0700) if it is missing; None if it is fit for sockets, else why not."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        return f"cannot make the folder {path}: {exc.strerror or exc}"
    try:
        st = os.lstat(path)
    except OSError as exc:
        return f"cannot read the folder {path}: {exc.strerror or exc}"
    if not stat.S_ISDIR(st.st_mode):
        return f"{path} is not a folder (a symlink?)"
    if st.st_uid != os.geteuid():
        return f"the folder {path} belongs to another user (uid {st.st_uid})"
    if st.st_mode & 0o077:
        return f"the folder {path} is open to other users (mode {stat.S_IMODE(st.st_mode):o}, not 700)"
    return None


def netns_id() -> str:
    """The network namespace this process runs in (its inode number), or "" where there are none."""
    try:
        return str(os.stat("/proc/self/ns/net").st_ino)
    except OSError:
        return ""


def socket_path(directory: str, node: str, netns: str) -> str | None:
    """The path of node ``node``'s socket in ``directory``, or None if no path fits."""
    file = f"{node}.{netns}.sock" if netns else f"{node}.sock"
    path = os.path.join(directory, file)
    if _SAFE_NAME.fullmatch(node) and not node.startswith(".") and len(os.fsencode(path)) <= MAX_PATH:
        return path
    path = os.path.join(directory, hashlib.sha256(file.encode()).hexdigest()[:32] + ".sock")
    return path if len(os.fsencode(path)) <= MAX_PATH else None


def same_host(peer_host: str, own_host: str) -> bool:
    """Is a peer at ``peer_host`` on this node's host (``own_host``, the host of its name)?"""
    if peer_host == own_host or peer_host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(peer_host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def bind(path: str) -> tuple[socket.socket, tuple[int, int, int]]:
    """A non-blocking Unix stream socket bound at ``path`` (not listening yet), and the
    identity of its file (device, inode, and change time: a file made in place of a
    removed one may get its inode); a stale socket file there is replaced first.

    Raises:
        OSError: ``EADDRINUSE`` when a live socket accepts at ``path``, ``EEXIST`` when
            something other than a socket is there, or why ``bind`` failed.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise OSError(errno.EEXIST, "a file that is not a socket is in the way", path)
        if _accepts(path):
            raise OSError(errno.EADDRINUSE, "a live node listens on this socket", path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.setblocking(False)
        st = os.lstat(path)
    except BaseException:
        sock.close()
        raise
    return sock, _identity(st)


def _accepts(path: str) -> bool:
    """Does a socket accept connections at ``path``? (A refusal: nothing listens there.)"""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.setblocking(False)
    try:
        result = probe.connect_ex(path)
    finally:
        probe.close()
    # A full backlog (EAGAIN) is a live listener too.
    return result in (0, errno.EAGAIN, errno.EINPROGRESS)


def remove(path: str, ident: tuple[int, int, int]) -> None:
    """Remove the socket file at ``path`` if it is still the one ``bind`` made (``ident``)."""
    try:
        if _identity(os.lstat(path)) == ident:
            os.unlink(path)
    except OSError:
        pass


def _identity(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_dev, st.st_ino, st.st_ctime_ns

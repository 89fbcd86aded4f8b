"""``RedisStore``: the ``Store`` contract in Redis, through the ``redis`` package's
asyncio client (``pip install 'distable[redis]'``).

One hash per name, ``<namespace>:n:<encoded name>``, and one set, ``<namespace>:names``,
of those keys (``load`` reads it). Each write is one Lua script, so Redis judges it
against the record and applies it atomically: two hosts that write the same name at the
same moment (a woken stale host and the name's new host) are ordered by Redis, and the
older lineage loses whichever comes second. The hash's fields:

| field | value |
|---|---|
| ``name`` | the encoded name (``encode_value``) |
| ``spec`` | the encoded factory spec, with the user's argument values |
| ``replicas`` | the replica count, decimal |
| ``lineage`` | the encoded ``Lineage`` of the last checkpoint (or of the registration) |
| ``v1``..``v4``, ``seq`` | the lineage (epoch, origin node, incarnation, id) and the seq, |
| | as fields that compare bytewise (``_records.version_fields``): what the scripts compare |
| ``state`` | the last checkpoint's encoded state (absent before the first) |

Redis's own durability decides what survives a Redis crash: with ``appendonly yes`` and
``appendfsync everysec`` (the usual), up to a second of writes; ``always``, none.
"""

from __future__ import annotations

import urllib.parse
from typing import TYPE_CHECKING, Any

from .._errors import StoreUnavailable
from .._extras import require
from ..wire._codec import decode_value
from ..wire._messages import Lineage, Spec
from ._api import Outcome, Remembered
from ._records import check_write, decode_lineage, decode_spec, encode_lineage, encode_spec, name_key, version_fields

if TYPE_CHECKING:
    import redis.asyncio

# bcmp: bytewise comparison (Lua's own < on strings follows the server's locale);
# vcmp: the first ``count`` version fields of the record against ``given``.
_COMPARE = """
local function bcmp(a, b)
  if a == b then return 0 end
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then
      if x < y then return -1 else return 1 end
    end
  end
  if #a < #b then return -1 else return 1 end
end
local function vcmp(stored, given, first, count)
  for i = 1, count do
    local c = bcmp(stored[i], given[first + i - 1])
    if c ~= 0 then return c end
  end
  return 0
end
"""

# KEYS: record, index. ARGV: fresh, name, spec, replicas, lineage, v1..v4, seq 0.
_SAVE_NAME = (
    _COMPARE
    + """
local rec = KEYS[1]
if ARGV[1] == '1' or redis.call('EXISTS', rec) == 0 then
  redis.call('DEL', rec)
  redis.call('HSET', rec, 'name', ARGV[2], 'spec', ARGV[3], 'replicas', ARGV[4], 'lineage', ARGV[5],
             'v1', ARGV[6], 'v2', ARGV[7], 'v3', ARGV[8], 'v4', ARGV[9], 'seq', ARGV[10])
  redis.call('SADD', KEYS[2], rec)
  return 1
end
local c = vcmp(redis.call('HMGET', rec, 'v1', 'v2', 'v3', 'v4'), ARGV, 6, 4)
if c > 0 then return 0 end
redis.call('HSET', rec, 'spec', ARGV[3], 'replicas', ARGV[4])
if c < 0 then
  redis.call('HSET', rec, 'lineage', ARGV[5], 'v1', ARGV[6], 'v2', ARGV[7], 'v3', ARGV[8], 'v4', ARGV[9])
end
redis.call('SADD', KEYS[2], rec)
return 1
"""
)

# KEYS: record. ARGV: lineage, v1..v4, seq, state.
_SAVE_CHECKPOINT = (
    _COMPARE
    + """
local rec = KEYS[1]
if redis.call('EXISTS', rec) == 0 then return -1 end
if vcmp(redis.call('HMGET', rec, 'v1', 'v2', 'v3', 'v4', 'seq'), ARGV, 2, 5) >= 0 then return 0 end
redis.call('HSET', rec, 'lineage', ARGV[1], 'v1', ARGV[2], 'v2', ARGV[3], 'v3', ARGV[4], 'v4', ARGV[5],
           'seq', ARGV[6], 'state', ARGV[7])
return 1
"""
)

# KEYS: record, index. ARGV: v1..v4.
_REMOVE = (
    _COMPARE
    + """
local rec = KEYS[1]
if redis.call('EXISTS', rec) == 1 then
  if vcmp(redis.call('HMGET', rec, 'v1', 'v2', 'v3', 'v4'), ARGV, 1, 4) > 0 then return 0 end
  redis.call('DEL', rec)
end
redis.call('SREM', KEYS[2], rec)
return 1
"""
)

_OUTCOMES = {1: Outcome.APPLIED, 0: Outcome.STALE, -1: Outcome.MISSING}

#: Keys read per round trip by ``load``.
_LOAD_BATCH = 512


def redacted(url: str) -> str:
    """``url`` without its password (for log lines and errors)."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


class RedisStore:
    """A ``Store`` in Redis at ``url`` (``redis://host:port/db``, ``rediss://`` for TLS,
    ``unix:///path?db=0``), its keys under ``namespace`` (one per cluster sharing a
    database). ``timeout`` bounds every socket operation and connection attempt of the
    client (``DurableStore`` bounds each whole operation too); the client does not retry
    by itself: ``DurableStore`` does.

    Raises:
        MissingExtra: the ``redis`` package is not installed.
    """

    def __init__(
        self, url: str, *, namespace: str = "distable", timeout: float = 2.0, max_connections: int = 16
    ) -> None:
        require("redis", "RedisStore (the durable store in Redis)")
        import redis.asyncio
        import redis.exceptions
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.url = url
        self.namespace = namespace
        self._address = redacted(url)
        # A blocking pool: thousands of concurrent writes wait (at most ``timeout``) for
        # one of ``max_connections`` connections instead of opening one each. One retry,
        # at once, on a broken connection only: a pooled connection that Redis closed
        # (a Redis restart) is replaced without the caller seeing it; timeouts are not
        # retried (the caller's deadline is what counts). A retried write that had been
        # applied answers STALE the second time: counted as refused, harmless.
        self._pool = redis.asyncio.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,)),
        )
        self._client: redis.asyncio.Redis = redis.asyncio.Redis(connection_pool=self._pool)
        self._index = f"{namespace}:names".encode()
        self._prefix = f"{namespace}:n:".encode()
        self._save_name = self._client.register_script(_SAVE_NAME)
        self._save_checkpoint = self._client.register_script(_SAVE_CHECKPOINT)
        self._remove = self._client.register_script(_REMOVE)

    @property
    def address(self) -> str:
        return self._address

    def __repr__(self) -> str:
        return f"RedisStore({self._address!r}, namespace={self.namespace!r})"

    async def _run(self, script: Any, keys: list[bytes], args: list[Any]) -> Outcome:
        return _OUTCOMES[int(await self._call(script(keys=keys, args=args)))]

    async def _call(self, awaitable: Any) -> Any:
        import redis.exceptions

        try:
            return await awaitable
        except (redis.exceptions.RedisError, OSError) as exc:
            raise StoreUnavailable(self._address, f"{type(exc).__name__}: {exc}") from exc

    async def save_name(self, name: Any, spec: Spec, replicas: int, lineage: Lineage, *, fresh: bool) -> Outcome:
        key = self._prefix + name_key(name)
        check_write(lineage, 0, replicas)
        version = version_fields(lineage, 0)
        args = [b"1" if fresh else b"0", key[len(self._prefix) :], encode_spec(spec), b"%d" % replicas]
        args += [encode_lineage(lineage), *version]
        return await self._run(self._save_name, [key, self._index], args)

    async def save_checkpoint(self, name: Any, lineage: Lineage, seq: int, state: bytes) -> Outcome:
        key = self._prefix + name_key(name)
        check_write(lineage, seq)
        args = [encode_lineage(lineage), *version_fields(lineage, seq), bytes(state)]
        return await self._run(self._save_checkpoint, [key], args)

    async def remove(self, name: Any, lineage: Lineage) -> Outcome:
        key = self._prefix + name_key(name)
        check_write(lineage)
        return await self._run(self._remove, [key, self._index], version_fields(lineage, 0)[:4])

    async def epoch(self, name: Any) -> int | None:
        key = self._prefix + name_key(name)
        value = await self._call(self._client.hget(key, "v1"))
        return None if value is None else int(value)

    async def load(self) -> list[Remembered]:
        keys: list[bytes] = list(await self._call(self._client.smembers(self._index)))
        out: list[Remembered] = []
        for start in range(0, len(keys), _LOAD_BATCH):
            pipe = self._client.pipeline(transaction=False)
            for key in keys[start : start + _LOAD_BATCH]:
                pipe.hgetall(key)
            for fields in await self._call(pipe.execute()):
                if fields:  # the scripts keep the set and the hashes in step; a key deleted by hand is skipped
                    out.append(_remembered(fields))
        return out

    async def close(self) -> None:
        await self._client.aclose()
        await self._pool.disconnect()


def _remembered(fields: dict[bytes, bytes]) -> Remembered:
    state = fields.get(b"state")
    return Remembered(
        decode_value(fields[b"name"]),
        decode_spec(fields[b"spec"]),
        int(fields[b"replicas"]),
        decode_lineage(fields[b"lineage"]),
        int(fields[b"seq"]),
        state,
    )

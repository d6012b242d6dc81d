"""The usage report in Redis, shared by every replica: `GET /report` on any of them answers for
the whole deployment. Same interface and numbers as `dataplane.report.UsageReport`.

Layout, per one-minute bucket b (every key expires MONITOR_WINDOW + 2 minutes after its last
write): `<prefix>:report:<b>:requests` a sorted set of image key → requests, and
`<prefix>:report:<b>:<image|model|route>` hashes of name → "requests hits errors processed
time_sum time_min time_max"; `<prefix>:report:buckets` lists the buckets that exist, and
`<prefix>:report:images` the image keys with entries (at most `max_keys`, see MERGE). A record
is one Lua script call (atomic, one round trip). The top N images are computed in Redis
(ZUNIONSTORE over the window's buckets, then ZRANGE); only those N images' statistics, and the
few models and routes, are read back; the per-minute series of the last hour adds up the route hashes read for the
totals, minute by minute. Nothing read back is trusted: buckets outside the window
(from the future too) are pruned, numbers and names are shown only in the shapes and ranges
this service writes (`_unpack`, `_ours`), so whoever can write to Redis cannot make /report
slow, non-finite or a place for their text.

When Redis cannot take a record, it is kept in an in-memory `UsageReport` and handed over once
Redis answers again; meanwhile `/report` says `"partial": true` (and, when Redis cannot be read
at all, answers this replica's in-memory slice with `"shared": false`).
"""
from __future__ import annotations

import collections
import re
import threading
import time
import uuid

from dataplane.report import BUCKET_SECONDS, MAX_IMAGES, Stats, UsageReport, minute_series
from dataplane.shared_store import SharedStore
from dataplane.sources import KEY_SHAPE
from models.folder_spec import FOLDER_NAME

GROUPS = ("image", "model", "route")
# Keys per ZUNIONSTORE: each command blocks Redis for a few ms at most, never a whole window's
# merge at once (a full default window's merge in one transaction blocked Redis measurably).
UNION_CHUNK = 200
# What a name read from Redis must look like to be shown: a model is a built-in or folder name
# (built-in names have the folder names' shape too), a route a Flask rule of ours.
MODEL_NAME = FOLDER_NAME
ROUTE_NAME = re.compile(r"(?:/(?:[a-z0-9_.-]{1,64}|<[a-z_]{1,32}>)){1,8}")
# Past these a stored count or time is not ours: counts stay exact in a double (Lua's numbers),
# and no image takes a day.
MAX_COUNT = 2**53
MAX_SECONDS = 86_400.0

# KEYS: 1 the bucket index, 2 this bucket's image requests, 3-5 its image, model, route hashes,
# 6 the image index (image key -> the last bucket it was seen in).
# ARGV: ttl, bucket, oldest and newest bucket of the window, the image cap, then per entry 9
# values: hash (3-5), name, requests, hits, errors, processed, time_sum, time_min, time_max (min
# and max are -1 when nothing was processed).
# An image gets entries only while it is in the index, and a new image enters the index only
# while it holds fewer than the cap (after pruning it to the window): Redis cannot cheaply delete
# one image's entries from every minute, so past the cap a new image is counted for its model
# and route only. A stored value that does not parse, or holds numbers we never write, is
# replaced, never trusted.
MERGE = """
local ttl, bucket = tonumber(ARGV[1]), ARGV[2]
local oldest, newest, cap = ARGV[3], ARGV[4], tonumber(ARGV[5])
redis.call('ZADD', KEYS[1], bucket, bucket)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', oldest)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '(' .. newest, '+inf')
local function indexed(name)
  local seen = redis.call('ZSCORE', KEYS[6], name)
  if not seen then
    redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', oldest)
    redis.call('ZREMRANGEBYSCORE', KEYS[6], '(' .. newest, '+inf')
    if redis.call('ZCARD', KEYS[6]) >= cap then return false end
  end
  if not seen or tonumber(seen) < tonumber(bucket) then redis.call('ZADD', KEYS[6], bucket, name) end
  return true
end
for i = 6, #ARGV, 9 do
  local hash, name = tonumber(ARGV[i]), ARGV[i + 1]
  if hash ~= 3 or indexed(name) then
    local new = {}
    for j = 1, 7 do new[j] = tonumber(ARGV[i + 1 + j]) end
    local old = {}
    local packed = redis.call('HGET', KEYS[hash], name)
    if packed then
      for field in string.gmatch(packed, '%S+') do old[#old + 1] = tonumber(field) or 0 / 0 end
    end
    local valid = #old == 7
    for j = 1, 7 do valid = valid and old[j] == old[j] and old[j] >= -1 and old[j] <= 9007199254740992 end
    if not valid then old = {0, 0, 0, 0, 0, -1, -1} end
    local low, high = new[6], new[7]
    if old[6] >= 0 and (low < 0 or old[6] < low) then low = old[6] end
    if old[7] > high then high = old[7] end
    redis.call('HSET', KEYS[hash], name, string.format('%d %d %d %d %.17g %.17g %.17g',
      old[1] + new[1], old[2] + new[2], old[3] + new[3], old[4] + new[4], old[5] + new[5], low, high))
    if hash == 3 then redis.call('ZINCRBY', KEYS[2], new[1], name) end
  end
end
for k = 1, #KEYS do redis.call('EXPIRE', KEYS[k], ttl) end
return 1
"""


class SharedUsageReport:
    def __init__(self, store: SharedStore, window: float, top_n: int, clock=time.time,
                 fallback: UsageReport | None = None, max_keys: int = MAX_IMAGES):
        self.store, self.window, self.top_n, self.clock = store, window, top_n, clock
        self.max_keys = max_keys
        self.fallback = fallback or UsageReport(window, top_n, max_keys, clock=clock)
        self.ttl = int(window) + 2 * BUCKET_SECONDS
        self._merge_script = store.fast.register_script(MERGE)
        self._handing_over = threading.Lock()

    def record(self, *, image_key: str | None, model: str | None, route: str,
               seconds: float | None, cache_hit: bool = False, error: bool = False) -> None:
        stats = Stats()
        stats.add(seconds, cache_hit, error)
        entries = [(group, name, stats) for group, name in zip(GROUPS, (image_key, model, route)) if name is not None]
        if not self._merge(int(self.clock() // BUCKET_SECONDS), entries):
            self.fallback.record(image_key=image_key, model=model, route=route, seconds=seconds,
                                 cache_hit=cache_hit, error=error)
        elif not self.fallback.empty:
            self._hand_over()

    def snapshot(self) -> dict:
        if not self.fallback.empty:
            self._hand_over()
        now = self.clock()
        window = self._window(now)
        shared = self.store.run("report_read", lambda client: self._read(client, *window, now), None, slow=True)
        if shared is None:  # this replica's own slice, from memory
            return {**self.fallback.snapshot(), "shared": False, "partial": True}
        return {"window_seconds": self.window, **shared, "shared": True, "partial": not self.fallback.empty}

    # --- writing ----------------------------------------------------------------------------

    def _keys(self, bucket: int) -> list[str]:
        return [self.store.key("report", "buckets"), self.store.key("report", str(bucket), "requests"),
                *(self.store.key("report", str(bucket), group) for group in GROUPS),
                self.store.key("report", "images")]

    def _window(self, now: float | None = None) -> tuple[int, int]:
        """The buckets that may hold counts: after `oldest`, up to `newest` (the next minute, for
        a replica whose clock is a little ahead). Anything outside is pruned, never read."""
        now = self.clock() if now is None else now
        return int((now - self.window) // BUCKET_SECONDS), int(now // BUCKET_SECONDS) + 1

    def _merge(self, bucket: int, entries: list[tuple[str, str, Stats]]) -> bool:
        args: list = [self.ttl, bucket, *self._window(), self.max_keys]
        for group, name, stats in entries:
            processed = stats.processed > 0
            args += [3 + GROUPS.index(group), name, stats.requests, stats.cache_hits, stats.errors,
                     stats.processed, repr(stats.time_sum), repr(stats.time_min) if processed else -1,
                     repr(stats.time_max) if processed else -1]
        keys = self._keys(bucket)
        done = self.store.run("report_record",
                              lambda client: self._merge_script(keys=keys, args=args, client=client), None)
        return done is not None

    def _hand_over(self) -> None:
        """Records kept in memory while Redis was away go to Redis now (once, by one thread)."""
        if not self._handing_over.acquire(blocking=False):
            return
        try:
            oldest = int((self.clock() - self.window) // BUCKET_SECONDS)
            by_bucket = collections.defaultdict(list)
            for bucket, group, name, stats in self.fallback.drain():
                if bucket > oldest:
                    by_bucket[bucket].append((group, name, stats))
            kept = []
            for bucket, entries in sorted(by_bucket.items()):
                if kept or not self._merge(bucket, entries):  # after one failure, keep the rest
                    kept += [(bucket, group, name, stats) for group, name, stats in entries]
            if kept:
                self.fallback.absorb(kept)
        finally:
            self._handing_over.release()

    # --- reading ----------------------------------------------------------------------------

    def _buckets(self, client, oldest: int, newest: int) -> list[int]:
        """The window's buckets. The indexes are pruned first: of older buckets, of buckets from
        the future (a hostile write, or a clock far ahead: never pruned by time, they would be
        read on every /report), and of members that are not bucket numbers as we write them."""
        index, images = self.store.key("report", "buckets"), self.store.key("report", "images")
        pipe = client.pipeline(transaction=False)
        for name in (index, images):
            pipe.zremrangebyscore(name, "-inf", oldest)
            pipe.zremrangebyscore(name, f"({newest}", "+inf")
        pipe.zrangebyscore(index, f"({oldest}", newest)
        members = pipe.execute()[-1]
        buckets = {member: _bucket(member, oldest, newest) for member in members}
        stray = [member for member, bucket in buckets.items() if bucket is None]
        if stray:
            client.zrem(index, *stray)
        return sorted(bucket for bucket in buckets.values() if bucket is not None)

    def _read(self, client, oldest: int, newest: int, now: float) -> dict:
        buckets = self._buckets(client, oldest, newest)
        if not buckets:
            return {"images": [], "distinct_images": 0, "models": {}, "routes": {},
                    "series": minute_series((), now, self.window)}
        distinct, top, scratch = self._top_images(client, buckets)
        members = [member for member, _ in top if _ours(member, KEY_SHAPE)]
        pipe = client.pipeline(transaction=False)
        for bucket in buckets:
            if members:
                pipe.hmget(self.store.key("report", str(bucket), "image"), members)
            pipe.hgetall(self.store.key("report", str(bucket), "model"))
            pipe.hgetall(self.store.key("report", str(bucket), "route"))
        pipe.delete(scratch)
        replies = iter(pipe.execute(raise_on_error=False)[:-1])
        totals = {group: collections.defaultdict(Stats) for group in GROUPS}
        per_minute = {}  # bucket -> its routes' counts added up: the series
        for bucket in buckets:
            if members:
                _add(totals["image"], zip(members, _reply(next(replies), list)))
            _add(totals["model"], _named(next(replies), MODEL_NAME))
            per_minute[bucket] = _add(totals["route"], _named(next(replies), ROUTE_NAME))
        images = [{"key": _text(member), **totals["image"][member].as_dict()}
                  for member in members if totals["image"].get(member, Stats()).requests]
        return {"images": images, "distinct_images": distinct,
                "models": {_text(n): s.as_dict() for n, s in sorted(totals["model"].items())},
                "routes": {_text(n): s.as_dict() for n, s in sorted(totals["route"].items())},
                "series": minute_series([per_minute], now, self.window)}

    def _top_images(self, client, buckets: list[int]) -> tuple[int, list[tuple[bytes, float]], str]:
        """The number of distinct images and the top N (most requests first, then by key, as in
        memory), merged in Redis into a scratch key that expires within a minute."""
        scratch = self.store.key("report", "top", uuid.uuid4().hex)
        keys = [self.store.key("report", str(bucket), "requests") for bucket in buckets]
        # One short command at a time, so other replicas' cache reads are served in between.
        for start in range(0, len(keys), UNION_CHUNK):
            client.zunionstore(scratch, keys[start:start + UNION_CHUNK] + ([scratch] if start else []))
            if not start:
                client.expire(scratch, 60)
        pipe = client.pipeline(transaction=False)
        pipe.zcard(scratch)
        pipe.zrange(scratch, 0, self.top_n - 1, desc=True, withscores=True)
        distinct, top = pipe.execute()
        if len(top) == self.top_n:  # ties at the last score: the smallest keys, as in memory
            last = top[-1][1]
            above = [item for item in top if item[1] > last]
            ties = client.zrangebyscore(scratch, last, last, start=0, num=self.top_n - len(above), withscores=True)
            top = sorted(above, key=lambda item: (-item[1], item[0])) + ties
        else:
            top = sorted(top, key=lambda item: (-item[1], item[0]))
        return distinct, top, scratch


def _reply(reply, kind):
    """A pipeline reply of the expected kind, or an empty one (an error, or a key that is not ours)."""
    return reply if isinstance(reply, kind) else kind()


def _named(reply, shape: re.Pattern):
    """A hash reply's (name, packed) pairs whose names have a shape we write."""
    return (pair for pair in _reply(reply, dict).items() if _ours(pair[0], shape))


def _add(totals: dict, pairs) -> Stats:
    """Add each entry we wrote to its name's totals; what was added, summed over the names."""
    added = Stats()
    for name, packed in pairs:
        stats = _unpack(packed)
        if stats is not None:
            totals[name].merge(stats)
            added.merge(stats)
    return added


def _unpack(packed) -> Stats | None:
    """"requests hits errors processed time_sum time_min time_max", or None when it is not ours:
    numbers we never write (negative, past MAX_COUNT or MAX_SECONDS, more hits, errors and
    processed than requests, a minimum over the maximum, a sum no `processed` times between them
    add up to) are refused, so no sum over the window can overflow or mislead."""
    if not isinstance(packed, bytes):
        return None
    fields = packed.split()
    try:
        counts = [int(field) for field in fields[:4]]
        times = [float(field) for field in fields[4:]]
    except ValueError:
        return None
    if len(counts) != 4 or len(times) != 3 or not 0 <= min(counts) <= max(counts) <= MAX_COUNT:
        return None
    requests, hits, errors, processed = counts
    time_sum, low, high = times
    if hits + errors + processed > requests:
        return None
    if not processed:
        return Stats(requests, hits, errors) if time_sum == 0 else None
    slack = 1e-6 * processed * high + 1e-9  # float sums of `processed` times (finite: high is bounded)
    if not (0 <= low <= high <= MAX_SECONDS and processed * low - slack <= time_sum <= processed * high + slack):
        return None
    return Stats(requests, hits, errors, processed, time_sum, low, high)


def _bucket(member: bytes, oldest: int, newest: int) -> int | None:
    """The bucket number a bucket index member names, if it is one we write and in the window."""
    if not member.isdigit() or member != str(int(member)).encode():
        return None
    bucket = int(member)
    return bucket if oldest < bucket <= newest else None


def _ours(name: bytes, shape: re.Pattern) -> bool:
    """A name read from Redis is shown only in a shape the service writes."""
    try:
        return shape.fullmatch(name.decode("ascii")) is not None
    except UnicodeDecodeError:
        return False


def _text(name: bytes) -> str:
    return name.decode("utf-8", "replace")

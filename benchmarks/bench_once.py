"""Section 12: what exactly-once mode costs, against it off, side by side in one run.

For each write that carries a write id in exactly-once mode (``Store.incr`` of a hash field,
``Queue.push`` of one value, ``SortedSet.incr``, ``Set.add``), on the same server, in the same
run, with the same store settings but ``exactly_once``:

- calls per second: interleaved samples (off, on, off, on, ...) of ``inner`` calls, median;
- server commands per call: ``INFO commandstats`` before and after N calls (commands a
  script runs count too), and the server's own time per call (``usec`` of the command sent);
- memory: ``used_memory`` before and after N calls, per call: what the write ids' records
  keep. A record is deleted with the store's next call to its server once the caller has
  the reply (a bare mark stays ``write_id_ttl`` after a resend), so this is about zero;
  the row of a push and a pop of 1 kB shows that a popped value is not kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import attrs
import redis

import redmodel
from benchmarks._common import Context, Section, delete_prefix, interleaved, ratio, table

PREFIX = "rmbench_once"


@redmodel.model(prefix=f"{PREFIX}_hat")
@attrs.define
class Counter:
    id: str = redmodel.key_field(generated=False)
    quantity: int = 0


@attrs.frozen
class Write:
    """One write method: ``make(store, tag)`` returns a call doing it once; ``sent`` is the
    command it sends with the mode off (what ``usec`` is read from)."""

    name: str
    make: Callable[[redmodel.Store, str], Callable[[], Any]]
    sent: str


def _incr(store: redmodel.Store, tag: str) -> Callable[[], Any]:
    store.save(Counter(id=tag))
    return lambda: store.incr(Counter, tag, "quantity", 1)


def _push(store: redmodel.Store, tag: str) -> Callable[[], Any]:
    q = redmodel.containers.Queue(store, (PREFIX, "q", tag), int)
    return lambda: q.push(1)


def _zincr(store: redmodel.Store, tag: str) -> Callable[[], Any]:
    z = redmodel.containers.SortedSet(store, (PREFIX, "z", tag), str)
    return lambda: z.incr("m", 1)


def _sadd(store: redmodel.Store, tag: str) -> Callable[[], Any]:
    s = redmodel.containers.Set(store, (PREFIX, "s", tag), int)
    n = iter(range(10**9))
    return lambda: s.add(next(n))


def _push_pop(store: redmodel.Store, tag: str) -> Callable[[], Any]:
    q = redmodel.containers.Queue(store, (PREFIX, "p", tag), bytes)
    item = b"x" * 1024

    def call() -> Any:
        q.push(item)
        return q.pop()

    return call


WRITES = [
    Write("Store.incr", _incr, "evalsha"),
    Write("Queue.push", _push, "rpush"),
    Write("SortedSet.incr", _zincr, "zincrby"),
    Write("Set.add", _sadd, "sadd"),
    Write("Queue.push + pop of 1 kB", _push_pop, "lpop"),
]


def _stats(client: redis.Redis) -> dict[str, tuple[int, int]]:
    """command -> (calls, usec) from INFO commandstats."""
    raw = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"]))
            for name, v in raw.items()}


def _measure(client: redis.Redis, call: Callable[[], Any], n: int, sent: str
             ) -> tuple[float, float, str, float]:
    """(commands per call, server µs per call of the command sent, the commands, bytes of
    memory per call) over ``n`` calls."""
    client.config_resetstat()
    memory = int(client.info("memory")["used_memory"])
    for _ in range(n):
        call()
    time.sleep(0.1)
    grown = int(client.info("memory")["used_memory"]) - memory
    stats = _stats(client)
    stats.pop("info", None)
    stats.pop("config|resetstat", None)
    calls = {name: c for name, (c, _) in stats.items() if c}
    usec = stats.get(sent, (0, 0))[1]
    shown = ", ".join(f"{name} {c / n:g}" for name, c in sorted(calls.items(),
                                                               key=lambda kv: -kv[1]))
    return sum(calls.values()) / n, usec / n, shown, grown / n


def run(ctx: Context) -> Section:
    section = Section("12. Exactly-once mode: its cost against it off, in one run")
    n = ctx.pick(2_000, 20_000)
    samples, inner = ctx.pick((15, 20), (40, 100))
    client = ctx.client()
    off = redmodel.Store(ctx.client())
    on = redmodel.Store(ctx.client(), exactly_once=True)
    rows = []
    try:
        for write in WRITES:
            calls = [write.make(off, f"{write.name}-off"), write.make(on, f"{write.name}-on")]
            t_off, t_on = interleaved(calls, samples, inner)
            delete_prefix(client, f"{PREFIX}*")
            delete_prefix(client, "redmodel:once:*")
            c_off, u_off, shown_off, m_off = _measure(
                client, write.make(off, f"{write.name}-m-off"), n, write.sent)
            c_on, u_on, shown_on, m_on = _measure(
                client, write.make(on, f"{write.name}-m-on"), n, "evalsha")
            delete_prefix(client, f"{PREFIX}*")
            delete_prefix(client, "redmodel:once:*")
            rows.append([write.name, f"{1 / t_off:,.0f}", f"{1 / t_on:,.0f}",
                         ratio(t_off, t_on), f"{c_off:g} → {c_on:g}",
                         f"{u_off:.1f} → {u_on:.1f}", ratio(u_on, u_off),
                         f"{m_off:,.0f} → {m_on:,.0f}"])
            section.data[write.name] = {"off": shown_off, "on": shown_on}
    finally:
        for c in (off, on):
            c.close()
        client.close()
    section.blocks.append(table(
        ["write", "calls/s off", "calls/s on", "on / off speed", "server commands per call",
         "server µs per call", "on / off server time", "bytes kept per call"], rows))
    section.blocks.append(
        f"Same server, same run; speed: median of {samples} interleaved samples of {inner} "
        f"calls; commands, server time and memory: INFO over {n:,} calls per mode. "
        "\"on / off speed\" is calls per second with the mode on divided by off. The bytes "
        "kept per call are what the records of write ids keep: each is deleted with the "
        "store's next call to the server once its reply has arrived (so at most the last "
        "one is left), a bare mark after a resend.")
    detail = [[name, d["off"], d["on"]] for name, d in section.data.items()]
    section.blocks.append(table(["write", "commands per call, off", "commands per call, on"],
                                detail, "lll"))
    return section

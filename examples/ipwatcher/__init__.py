"""The tutorial's IP watcher (PyHats.com, part 2), written with redmodel's containers.

Middleware pushes the address of every request onto a queue; the watcher pops them with
BLPOP, counts visits per address per minute in a windowed counter, and flags an address
that reaches ``MAXVISITS`` in one minute as a hat bot.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from ipaddress import IPv4Address

import redmodel
from redmodel.containers import Queue, WindowCounter

MAXVISITS = 15
WINDOW = 60  # seconds: visits are counted per address per minute
BOT = IPv4Address("104.174.118.18")


def ip_queue(store: redmodel.Store) -> Queue[IPv4Address]:
    """The queue middleware pushes addresses onto: the list ``ipwatcher:ips``."""
    return Queue(store, ("ipwatcher", "ips"), IPv4Address)


def visit_counter(store: redmodel.Store) -> WindowCounter:
    """Visits per address per minute: keys ``ipwatcher:visits:<address>:<minute start>+60``."""
    return WindowCounter(store, ("ipwatcher", "visits"), window=WINDOW)


def watch(
    store: redmodel.Store,
    *,
    idle_timeout: float | None = None,
    maxvisits: int = MAXVISITS,
    log: Callable[[str], object] = print,
) -> set[IPv4Address]:
    """Consume the queue until SIGINT/SIGTERM (or ``idle_timeout`` seconds without a
    visit) and return the addresses flagged as bots."""
    blacklist: set[IPv4Address] = set()
    visits = visit_counter(store)
    for addr in ip_queue(store).consume(idle_timeout=idle_timeout, poll=0.5):
        n = visits.incr(addr)  # INCRBY + PEXPIRE to the end of the minute, one round trip
        if n >= maxvisits:
            log(f"Hat bot detected!: {addr} ({n} visits this minute)")
            blacklist.add(addr)
        else:
            log(f"{dt.datetime.now(dt.timezone.utc):%H:%M:%S.%f}: saw {addr}")
    return blacklist

"""A traffic generator standing in for the web middleware: a few visits each from some
ordinary addresses, and a burst of 20 from the hat bot, pushed one request at a time."""

from __future__ import annotations

import random
import time
from ipaddress import IPv4Address

import redmodel
from examples.ipwatcher import BOT, WINDOW, ip_queue

NORMAL = [
    IPv4Address("51.218.112.236"),
    IPv4Address("90.213.45.98"),
    IPv4Address("115.215.230.176"),
    IPv4Address("3.14.159.26"),
]
BOT_VISITS = 20


def requests(seed: int = 2019) -> list[IPv4Address]:
    """Every normal address 2 to 8 times (below MAXVISITS), the bot 20 times, shuffled."""
    rng = random.Random(seed)
    visits = [addr for addr in NORMAL for _ in range(rng.randint(2, 8))]
    visits += [BOT] * BOT_VISITS
    rng.shuffle(visits)
    return visits


def wait_for_a_fresh_window(margin: float = 3.0) -> None:
    """Counts are per fixed minute: a burst that straddles a minute boundary is split
    between two counters. The demo sends its burst well inside one minute."""
    left = WINDOW - time.time() % WINDOW
    if left < margin:
        time.sleep(left + 0.05)


def run(store: redmodel.Store, *, delay: float = 0.003, seed: int = 2019) -> int:
    """Push the requests onto the watcher's queue (RPUSH each); returns how many."""
    queue = ip_queue(store)
    sent = 0
    for addr in requests(seed):
        queue.push(addr)
        sent += 1
        time.sleep(delay)
    return sent

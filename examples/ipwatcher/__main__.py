"""The IP watcher end to end: ``python -m examples.ipwatcher``.

Runs against ``$REDIS_URL`` when it is set (writing only ``ipwatcher:*`` keys), else
against a throwaway server it starts and stops itself. A traffic generator thread pushes
visits while the watcher consumes them with BLPOP; the watcher stops once the queue has
been idle for a second, and prints which addresses it flagged.
"""

from __future__ import annotations

import threading
from ipaddress import IPv4Address

import redmodel
from examples._server import example_store
from examples.ipwatcher import MAXVISITS, ip_queue, traffic, visit_counter, watch


def main(store: redmodel.Store) -> set[IPv4Address]:
    ip_queue(store).clear()
    visits = visit_counter(store)
    for addr in [*traffic.NORMAL, traffic.BOT]:
        visits.reset(addr)  # a fresh count, even if the demo ran this minute already
    traffic.wait_for_a_fresh_window()

    sent: list[int] = []
    generator = threading.Thread(target=lambda: sent.append(traffic.run(store)))
    print(f"watching {ip_queue(store).key} (flag at {MAXVISITS} visits per minute)")
    generator.start()
    blacklist = watch(store, idle_timeout=1.0)
    generator.join()

    print(f"\n{sent[0]} visits pushed, queue idle for 1 s: watcher stopped")
    print(f"flagged: {', '.join(sorted(map(str, blacklist))) or 'none'}")
    calm = sorted(str(a) for a in traffic.NORMAL if a not in blacklist)
    print(f"not flagged: {', '.join(calm)}")
    return blacklist


if __name__ == "__main__":
    with example_store() as store:
        main(store)

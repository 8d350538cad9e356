"""Typed Redis containers bound to a store and one key: a list as a :class:`Queue`, a
:class:`Set`, a :class:`SortedSet`, a windowed :class:`WindowCounter`, and consumers that
take a queue's items at least once (:class:`Consumer`, :class:`AsyncConsumer`)::

    from redmodel.containers import Queue

    jobs = Queue(store, "jobs", int)
    jobs.push(1, 2, 3)

Each container is generic in its store: on a :class:`~redmodel.Store` its methods return
values, on an :class:`~redmodel.AsyncStore` coroutines of them (docs/containers.md).
"""

from redmodel.containers._consumer import AsyncConsumer, Consumer
from redmodel.containers._containers import (
    InTransaction,
    Queue,
    Set,
    SortedSet,
    WindowCounter,
    container_key,
    pop_blocking,
)

__all__ = [
    "AsyncConsumer",
    "Consumer",
    "InTransaction",
    "Queue",
    "Set",
    "SortedSet",
    "WindowCounter",
    "container_key",
    "pop_blocking",
]

for _name in __all__:
    globals()[_name].__module__ = __name__
del _name

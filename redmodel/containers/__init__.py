"""Typed Redis containers bound to a store and one key: a list as a :class:`Queue`, a
:class:`Set`, a :class:`SortedSet`, a windowed :class:`WindowCounter`, and consumers that
take a queue's items at least once (:class:`Consumer`, :class:`AsyncConsumer`)::

    from redmodel.containers import Queue

    jobs = Queue(store, "jobs", int)
    jobs.push(1, 2, 3)

Each container is generic in its store: on a :class:`~redmodel.Store` its methods return
values, on an :class:`~redmodel.AsyncStore` coroutines of them (docs/containers.md).
``container.in_tx(tx)`` gives the handle for a transaction, typed by the ``*InTx``
protocols (writes queue and return a :class:`~redmodel.transactions.Pending`).
"""

from redmodel.containers._base import (
    ContainerInAsyncTx,
    ContainerInTx,
    InTransaction,
    container_key,
)
from redmodel.containers._consumer import AsyncConsumer, ConsumedQueue, Consumer
from redmodel.containers._counter import (
    WindowCounter,
    WindowCounterInAsyncTx,
    WindowCounterInTx,
)
from redmodel.containers._queue import Queue, QueueInAsyncTx, QueueInTx, pop_blocking
from redmodel.containers._sets import (
    Set,
    SetInAsyncTx,
    SetInTx,
    SortedSet,
    SortedSetInAsyncTx,
    SortedSetInTx,
)

__all__ = [
    "AsyncConsumer",
    "ConsumedQueue",
    "Consumer",
    "ContainerInAsyncTx",
    "ContainerInTx",
    "InTransaction",
    "Queue",
    "QueueInAsyncTx",
    "QueueInTx",
    "Set",
    "SetInAsyncTx",
    "SetInTx",
    "SortedSet",
    "SortedSetInAsyncTx",
    "SortedSetInTx",
    "WindowCounter",
    "WindowCounterInAsyncTx",
    "WindowCounterInTx",
    "container_key",
    "pop_blocking",
]

for _name in __all__:
    globals()[_name].__module__ = __name__
del _name

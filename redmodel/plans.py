"""The types of redmodel's plans, for code that builds, combines or runs them.

Every store operation is a *plan*: a generator that yields :class:`Batch` es of commands
and receives their replies, then returns its result. A store runs it
(``store.run(plan)``, ``store.run_many(*plans)``, a transaction's ``tx.query(plan)``), and
the documented ``*_plan()`` methods of queries and containers return one
(``queue.length_plan()``, ``query.count_plan()``): their type is ``Plan[R]``, that is
``Generator[Batch, list[Any], R]``. A helper that takes or returns a plan is typed with
these names::

    from redmodel.plans import Plan

    def both(a: Plan[int], b: Plan[int]) -> Plan[int]:
        return (yield from a) + (yield from b)

Run a composed plan with ``store.run(plan)`` or, reading, ``tx.query(plan)``. In a
transaction, ``tx.queue`` takes only the plans redmodel builds (a composed plan could write
again after EXEC, once the rest is committed): queue each on its own, ``tx.queue(a);
tx.queue(b)``; they commit in one MULTI/EXEC.

:class:`SyncRunner` and :class:`AsyncRunner` are what a :class:`~redmodel.Store` and an
:class:`~redmodel.AsyncStore` are to the objects bound to them (``Query[M, S]``): the
protocols of running a plan at once, or as a coroutine.
"""

from __future__ import annotations

from redmodel._plan import AsyncRunner, Batch, Command, Plan, SyncRunner

__all__ = ["AsyncRunner", "Batch", "Command", "Plan", "SyncRunner"]

for _name in ("AsyncRunner", "Batch", "SyncRunner"):  # the classes say where they live
    globals()[_name].__module__ = __name__
del _name

"""Optimistic transactions: the handles a transaction function receives, what running one
returns, and its retry policy.

Run one with :func:`redmodel.transaction` (the front door); the names here are what its
functions receive and return::

    from redmodel.transactions import RetryPolicy, Transaction

    @redmodel.transaction(store, policy=RetryPolicy(attempts=20))
    def buy(tx: Transaction, hat_id: str) -> None: ...

- :class:`Transaction` / :class:`AsyncTransaction`: the handle (reads WATCH, writes queue);
- :class:`TransactionFunction` / :class:`AsyncTransactionFunction`: a decorated function;
  :class:`TransactionDecorator`: what ``transaction(store, policy=...)`` returns;
- :class:`Outcome` (value and attempt statistics), :class:`Pending` (a queued write's
  reply, filled after EXEC), :class:`TxStats`;
- :class:`RetryPolicy`: how often and how long to retry on a conflict;
- :func:`current_transaction`: the transaction running in this context, if any.
"""

from redmodel.transactions._handles import AsyncTransaction, Transaction, current_transaction
from redmodel.transactions._policy import Outcome, Pending, RetryPolicy, TxStats
from redmodel.transactions._run import (
    AsyncTransactionFunction,
    TransactionDecorator,
    TransactionFunction,
)

__all__ = [
    "AsyncTransaction",
    "AsyncTransactionFunction",
    "Outcome",
    "Pending",
    "RetryPolicy",
    "Transaction",
    "TransactionDecorator",
    "TransactionFunction",
    "TxStats",
    "current_transaction",
]

for _name in __all__:
    globals()[_name].__module__ = __name__
del _name

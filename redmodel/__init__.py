"""redmodel: typed models for Redis on attrs and cattrs.

Declare a model on an attrs class, save and load it through a :class:`Store`::

    import attrs, redmodel

    @redmodel.model(prefix="hat")
    @attrs.define
    class Hat:
        color: str
        price: float
        quantity: int = 0
        id: str = redmodel.key_field()

    store = redmodel.Store.from_url("redis://localhost:6379/0")
    key = store.save(Hat(color="black", price=49.99, quantity=1000))

The core names live here. Documented submodules hold the rest, one import away:
:mod:`redmodel.codecs` (serializers and transforms), :mod:`redmodel.containers` (queues,
sets, sorted sets, counters, consumers), :mod:`redmodel.transactions` (transaction
handles, results and the retry policy), :mod:`redmodel.plans` (the types of plans) and
:mod:`redmodel.migrations` (versioned steps over stored objects; imported on its own).
The old top-level paths of the moved names still work for one release and warn
(:class:`DeprecationWarning` naming the new path).
"""

from __future__ import annotations

import importlib
import sys
import warnings
from typing import TYPE_CHECKING, Any

from redmodel import codecs as codecs  # the documented submodules, one import away
from redmodel import containers as containers
from redmodel import plans as plans  # the types of plans (Batch, Plan), for typed helpers
from redmodel import transactions as transactions
from redmodel._errors import (
    CodecError,
    ConditionFailedError,
    ConflictError,
    CrossSlotError,
    DecodeError,
    EvictionPolicyError,
    IndexNotReadyError,
    ModelDefinitionError,
    NotFoundError,
    OutcomeUnknownError,
    QueryError,
    ReadAfterWriteError,
    RedmodelError,
    SchemaConflictError,
    ServerError,
    TransactionError,
    UniqueViolationError,
    ValidationError,
)
from redmodel._indexes._blind import configure_index_keys, generate_index_key
from redmodel._indexes._query import (
    Contains,
    OneOf,
    Page,
    Q,
    Query,
    Range,
    between,
    contains,
    ge,
    gt,
    le,
    lt,
    one_of,
)
from redmodel._models._keys import new_id
from redmodel._models._schema import field, key_field, model
from redmodel._plans._objects import DEFAULT
from redmodel._stores._async import AsyncStore
from redmodel._stores._sync import Store
from redmodel._transport._wire import ResendPolicy
from redmodel.transactions._run import transaction

if TYPE_CHECKING:  # the deprecated paths still type-check for one release
    from redmodel.codecs import Bz2Transform as Bz2Transform
    from redmodel.codecs import Codec as Codec
    from redmodel.codecs import CodecConfig as CodecConfig
    from redmodel.codecs import FernetTransform as FernetTransform
    from redmodel.codecs import JsonSerializer as JsonSerializer
    from redmodel.codecs import LzmaTransform as LzmaTransform
    from redmodel.codecs import MsgpackSerializer as MsgpackSerializer
    from redmodel.codecs import Serializer as Serializer
    from redmodel.codecs import Transform as Transform
    from redmodel.codecs import YamlSerializer as YamlSerializer
    from redmodel.codecs import ZlibTransform as ZlibTransform
    from redmodel.codecs import codec as codec
    from redmodel.codecs import codec_from_config as codec_from_config
    from redmodel.codecs import codec_from_env as codec_from_env
    from redmodel.codecs import configure_fernet as configure_fernet
    from redmodel.codecs import register_codec as register_codec
    from redmodel.containers import AsyncConsumer as AsyncConsumer
    from redmodel.containers import Consumer as Consumer
    from redmodel.containers import Queue as Queue
    from redmodel.containers import Set as Set
    from redmodel.containers import SortedSet as SortedSet
    from redmodel.containers import WindowCounter as WindowCounter
    from redmodel.containers import container_key as container_key
    from redmodel.containers import pop_blocking as pop_blocking
    from redmodel.transactions import AsyncTransaction as AsyncTransaction
    from redmodel.transactions import AsyncTransactionFunction as AsyncTransactionFunction
    from redmodel.transactions import Outcome as Outcome
    from redmodel.transactions import Pending as Pending
    from redmodel.transactions import RetryPolicy as RetryPolicy
    from redmodel.transactions import Transaction as Transaction
    from redmodel.transactions import TransactionFunction as TransactionFunction
    from redmodel.transactions import TxStats as TxStats
    from redmodel.transactions import current_transaction as current_transaction
    from redmodel.transactions._run import transact as transact

__version__ = "0.1.0"

__all__ = [
    "AsyncStore",
    "CodecError",
    "ConditionFailedError",
    "ConflictError",
    "Contains",
    "CrossSlotError",
    "DEFAULT",
    "DecodeError",
    "EvictionPolicyError",
    "IndexNotReadyError",
    "ModelDefinitionError",
    "NotFoundError",
    "OneOf",
    "OutcomeUnknownError",
    "Page",
    "Q",
    "Query",
    "QueryError",
    "Range",
    "ReadAfterWriteError",
    "RedmodelError",
    "ResendPolicy",
    "SchemaConflictError",
    "ServerError",
    "Store",
    "TransactionError",
    "UniqueViolationError",
    "ValidationError",
    "between",
    "configure_index_keys",
    "contains",
    "field",
    "ge",
    "generate_index_key",
    "gt",
    "key_field",
    "le",
    "lt",
    "model",
    "new_id",
    "one_of",
    "transaction",
]

for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) or callable(_obj):
        _obj.__module__ = __name__
del _name, _obj

_CODECS = ("Bz2Transform", "Codec", "CodecConfig", "FernetTransform", "JsonSerializer",
           "LzmaTransform", "MsgpackSerializer", "Serializer", "Transform", "YamlSerializer",
           "ZlibTransform", "codec", "codec_from_config", "codec_from_env", "configure_fernet",
           "register_codec")
_CONTAINERS = ("AsyncConsumer", "Consumer", "Queue", "Set", "SortedSet", "WindowCounter",
               "container_key", "pop_blocking")
_TRANSACTIONS = ("AsyncTransaction", "AsyncTransactionFunction", "Outcome", "Pending",
                 "RetryPolicy", "Transaction", "TransactionFunction", "TxStats",
                 "current_transaction")
MOVED: dict[str, str] = {
    **dict.fromkeys(_CODECS, "redmodel.codecs"),
    **dict.fromkeys(_CONTAINERS, "redmodel.containers"),
    **dict.fromkeys(_TRANSACTIONS, "redmodel.transactions"),
}
"""Names that left the front door: old name -> the public module that holds it now. Each
still resolves here, with a DeprecationWarning, until the next release."""

DEPRECATED: dict[str, tuple[str, str]] = {
    "transact": ("redmodel.transactions._run",
                 "redmodel.transact is deprecated: use redmodel.transaction "
                 "(`redmodel.transaction(store)(fn)(*args)` runs fn once)"),
}
"""Old aliases of one idea: name -> (where it lives, the warning)."""


def _probed_by_import() -> bool:
    """Whether this lookup is the import machinery's ``hasattr`` probe of a ``from redmodel
    import X`` (``_handle_fromlist``), which runs before the IMPORT_FROM's own lookup: the
    probe stays silent so that each old import warns exactly once, at the user's line."""
    caller = sys._getframe(2)  # 0: this function, 1: __getattr__, 2: who looked the name up
    return (caller.f_code.co_name == "_handle_fromlist"
            and caller.f_globals.get("__name__") == "importlib._bootstrap")


def __getattr__(name: str) -> Any:
    if name in (MOVED.keys() | DEPRECATED.keys()) and _probed_by_import():
        where = MOVED[name] if name in MOVED else DEPRECATED[name][0]
        return getattr(importlib.import_module(where), name)
    if name in MOVED:
        new = MOVED[name]
        warnings.warn(f"redmodel.{name} moved to {new}.{name}: import it from {new} "
                      "(the old path goes away in the next release)",
                      DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(new), name)
    if name in DEPRECATED:
        where, message = DEPRECATED[name]
        warnings.warn(message, DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(where), name)
    raise AttributeError(f"module 'redmodel' has no attribute {name!r}")

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
"""

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
from redmodel.codecs import (
    Bz2Transform,
    Codec,
    CodecConfig,
    FernetTransform,
    JsonSerializer,
    LzmaTransform,
    MsgpackSerializer,
    Serializer,
    Transform,
    YamlSerializer,
    ZlibTransform,
    codec,
    codec_from_config,
    codec_from_env,
    configure_fernet,
    register_codec,
)
from redmodel.containers._containers import (
    AsyncConsumer,
    Consumer,
    Queue,
    Set,
    SortedSet,
    WindowCounter,
    container_key,
    pop_blocking,
)
from redmodel.transactions._tx import (
    AsyncTransaction,
    AsyncTransactionFunction,
    Outcome,
    Pending,
    RetryPolicy,
    Transaction,
    TransactionFunction,
    TxStats,
    current_transaction,
    transact,
    transaction,
)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT",
    "AsyncStore",
    "AsyncTransaction",
    "AsyncTransactionFunction",
    "AsyncConsumer",
    "Consumer",
    "Page",
    "Q",
    "Query",
    "QueryError",
    "Range",
    "between",
    "contains",
    "ge",
    "gt",
    "le",
    "lt",
    "one_of",
    "UniqueViolationError",
    "Queue",
    "Set",
    "SortedSet",
    "WindowCounter",
    "container_key",
    "pop_blocking",
    "ConditionFailedError",
    "Outcome",
    "Pending",
    "ReadAfterWriteError",
    "RetryPolicy",
    "Transaction",
    "TransactionError",
    "TransactionFunction",
    "TxStats",
    "current_transaction",
    "transact",
    "transaction",
    "Bz2Transform",
    "Codec",
    "CodecConfig",
    "FernetTransform",
    "JsonSerializer",
    "LzmaTransform",
    "MsgpackSerializer",
    "YamlSerializer",
    "ZlibTransform",
    "codec_from_config",
    "codec_from_env",
    "configure_fernet",
    "configure_index_keys",
    "generate_index_key",
    "CodecError",
    "ConflictError",
    "CrossSlotError",
    "DecodeError",
    "EvictionPolicyError",
    "IndexNotReadyError",
    "ModelDefinitionError",
    "NotFoundError",
    "OutcomeUnknownError",
    "RedmodelError",
    "ResendPolicy",
    "SchemaConflictError",
    "ServerError",
    "Serializer",
    "Store",
    "Transform",
    "ValidationError",
    "codec",
    "field",
    "key_field",
    "model",
    "new_id",
    "register_codec",
]

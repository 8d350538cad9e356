"""mypy plugin for code that uses redmodel. Enable it in the project's mypy configuration::

    [tool.mypy]
    plugins = ["redmodel.mypy"]

What it teaches mypy:

* ``redmodel.field(...)`` and ``redmodel.key_field(...)`` are attrs field specifiers, so a
  model's ``__init__`` has the right required, defaulted and keyword-only parameters.
  Without the plugin, mypy's attrs support knows only attrs' own ``attrs.field``/``attr.ib``
  and takes ``x: int = redmodel.field(index=True)`` for a field with a default: ``Hat()``
  would type-check and then raise ``TypeError``. ``key_field()`` has a default (a generated
  id); ``key_field(generated=False)`` has none and is keyword-only, as at run time.
* ``Store.incr`` and ``AsyncStore.incr`` return the type of the field they add to: ``int``
  for an int field, ``float`` for a float field, when the model and the field name (a
  string literal, or a dotted path into nested attrs classes) are known. Otherwise the
  declared ``int | float``. What the store refuses at run time is an error here too, by
  the same rule (``redmodel._models._specs.increment_kind``, docs/store.md "incr"): an
  unknown field or the key field; a field that is not ``int``/``float``, or has a
  ``codec=`` (its stored bytes are no number), or sits below an Optional or encoded
  object; an int field incremented by a ``float`` (or anything by a ``bool``). The same
  for the literal keys (and amounts) of ``incr_fields``' ``changes``, ``floor`` and
  ``ceiling`` dicts. What a field was declared with (``codec=``, ``key=``) is recorded
  in the class's mypy metadata when a ``@redmodel.model`` class is analysed, so it holds
  from mypy's cache too; a nested plain attrs class is read from its body when mypy has
  it (a cached one's ``codec=`` fields go unchecked: the run-time check remains).

* A transaction function of the wrong kind is an error at the decorator, as it is refused
  when decorated at run time: a generator function anywhere (code ``redmodel``), an
  ``async def`` (or a function returning a coroutine) given to a ``Store``'s transaction
  (``@store.transaction``, ``@store.transaction(policy=...)``,
  ``@redmodel.transaction(store)``, ``store.transact``; code ``arg-type``, as the mirror
  case, a sync function given to an ``AsyncStore``'s, is by the overloads). A
  ``functools.partial`` (or another callable object) is judged by what its call
  returns; ``transaction(fn).bind(store)`` of an ``async def`` with a ``Store`` is an
  ``arg-type`` error too.

How: mypy's attrs plugin recognises field specifiers by name, from sets it exports for
this purpose (mypy's documentation, "Extending mypy"), and reads ``default=``,
``factory=`` and ``kw_only=`` from each call. ``key_field`` implies them instead, so before
attrs looks at an attrs class (a ``@redmodel.model`` or a plain attrs base or mixin of
one), each ``key_field(...)`` call gets the argument it implies (``factory`` when
generated, ``kw_only=True`` when not) unless it passes one. The hook on attrs' own class
decorators then does what mypy's own hook there does (it tags the class for attrs' later
pass), since a plugin's hook takes the place of mypy's default one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from mypy.errorcodes import ARG_TYPE, ErrorCode
from mypy.nodes import (
    ARG_NAMED,
    GDEF,
    AssignmentStmt,
    CallExpr,
    Decorator,
    DictExpr,
    Expression,
    FuncItem,
    NameExpr,
    RefExpr,
    StrExpr,
    TempNode,
    TypeInfo,
    Var,
)
from mypy.plugin import ClassDefContext, FunctionContext, MethodContext, Plugin
from mypy.plugins.attrs import (
    attr_attrib_makers,
    attr_class_makers,
    attr_dataclass_makers,
    attr_define_makers,
    attr_frozen_makers,
    attr_tag_callback,
)
from mypy.semanal_shared import parse_bool
from mypy.subtypes import find_member
from mypy.types import (
    AnyType,
    CallableType,
    Instance,
    LiteralType,
    NoneType,
    ProperType,
    Type,
    TypeOfAny,
    TypeType,
    UnionType,
    get_proper_type,
)

__all__ = ["plugin"]

FIELD = "redmodel._models._schema.field"
KEY_FIELD = "redmodel._models._schema.key_field"
MODEL = "redmodel._models._schema.model"
INCR = ("redmodel._stores._sync.Store.incr", "redmodel._stores._async.AsyncStore.incr")
INCR_FIELDS = ("redmodel._stores._sync.Store.incr_fields",
               "redmodel._stores._async.AsyncStore.incr_fields")
#: info.metadata key: {"key": [field names], "codec": [field names]} of a model class.
METADATA = "redmodel"
#: What takes a transaction function (at which argument): a generator function there is
#: refused at run time, and an async def where the store is a sync Store.
TRANSACTION_DECORATORS = {
    "redmodel.transactions._run.TransactionDecorator.__call__": 0,
    "redmodel._stores._sync.Store.transaction": 0,
    "redmodel._stores._sync.Store.transact": 0,
    "redmodel._stores._async.AsyncStore.transaction": 0,
}
TRANSACTION_FUNCTIONS = {
    "redmodel.transactions._run.transaction": 0,
    "redmodel.transactions._run.transact": 1,
}
ASYNC_TX = "redmodel.transactions._handles.AsyncTransaction"
#: A sync store, as TransactionDecorator[...] holds it (transaction()'s protocol, or the class).
SYNC_STORE = ("redmodel.transactions._handles.Store", "redmodel._stores._sync.Store")
#: Where the store is a sync Store whatever the call: an async def there is refused.
SYNC_ONLY = ("redmodel._stores._sync.Store.transaction", "redmodel._stores._sync.Store.transact",
             "redmodel.transactions._run.transact")
#: A sync transaction function's bind: given a Store, refused for an async def at run time.
BIND = "redmodel.transactions._run.TransactionFunction.bind"
#: method name -> the methods of that name this plugin checks (also called on a subclass)
HOOKED_METHODS: dict[str, set[str]] = {}
for _method in (*TRANSACTION_DECORATORS, *INCR, *INCR_FIELDS, BIND):
    HOOKED_METHODS.setdefault(_method.rpartition(".")[2], set()).add(_method)
#: attrs' class decorators (mypy's attrs plugin tags the classes they make).
ATTRS_CLASS_MAKERS = frozenset(attr_class_makers | attr_dataclass_makers | attr_frozen_makers
                               | attr_define_makers)

#: The error code of what this plugin reports (``# type: ignore[redmodel]`` silences it).
REDMODEL = ErrorCode("redmodel", "redmodel model fields used wrongly", "General")

# The documented way to declare attrs field specifiers of one's own.
attr_attrib_makers.add(FIELD)
attr_attrib_makers.add(KEY_FIELD)


class RedmodelPlugin(Plugin):
    """See the module docstring."""

    def get_class_decorator_hook(
        self, fullname: str
    ) -> Callable[[ClassDefContext], None] | None:
        if fullname == MODEL:
            return _desugar_model
        return _desugar_attrs_class if fullname in ATTRS_CLASS_MAKERS else None

    def get_method_hook(self, fullname: str) -> Callable[[MethodContext], Type] | None:
        fullname = self._defined_at(fullname)
        if fullname in TRANSACTION_DECORATORS:
            return functools.partial(_check_transaction_function, fullname,
                                     TRANSACTION_DECORATORS[fullname])
        if fullname == BIND:
            return _check_bind
        if fullname in INCR_FIELDS:
            return _incr_fields
        return _incr_type if fullname in INCR else None

    def _defined_at(self, fullname: str) -> str:
        """``Store.transaction`` for ``app.MyStore.transaction`` (mypy names a method by the
        class of the object it is called on): where the method is defined, when it is one
        this plugin checks."""
        owner, _, name = fullname.rpartition(".")
        if name not in HOOKED_METHODS or fullname in HOOKED_METHODS[name]:
            return fullname
        symbol = self.lookup_fully_qualified(owner)
        if symbol is None or not isinstance(symbol.node, TypeInfo):
            return fullname
        info = symbol.node.get_containing_type_info(name)
        return f"{info.fullname}.{name}" if info is not None else fullname

    def get_function_hook(self, fullname: str) -> Callable[[FunctionContext], Type] | None:
        if fullname in TRANSACTION_FUNCTIONS:
            return functools.partial(_check_transaction_function, fullname,
                                     TRANSACTION_FUNCTIONS[fullname])
        return None


def plugin(version: str) -> type[Plugin]:
    """mypy's entry point."""
    return RedmodelPlugin


# -- key_field ---------------------------------------------------------------------------------


def _desugar_attrs_class(ctx: ClassDefContext) -> None:
    """An attrs class (a model, or a plain base or mixin of one): its key_field() calls
    get what they imply; then mypy's own hook for attrs' decorators, which this one
    replaces."""
    _desugar_key_fields(ctx)
    attr_tag_callback(ctx)


def _desugar_model(ctx: ClassDefContext) -> None:
    """A ``@redmodel.model`` class: desugared here unless an attrs decorator of its own
    does it (so that an error about a call is reported once)."""
    callees = (d.callee if isinstance(d, CallExpr) else d for d in ctx.cls.decorators)
    attrs_decorated = any(isinstance(c, RefExpr) and c.fullname in ATTRS_CLASS_MAKERS
                          for c in callees)
    if attrs_decorated:
        ctx.cls.info.metadata[METADATA] = _declared(ctx.cls.info)
    else:
        _desugar_key_fields(ctx)


def _desugar_key_fields(ctx: ClassDefContext) -> None:
    """Each ``key_field(...)`` call of the class body gets the argument it implies (once:
    a second run adds nothing); what the body declares is recorded in the class's
    metadata (kept in mypy's cache)."""
    ctx.cls.info.metadata[METADATA] = _declared(ctx.cls.info)
    for stmt in ctx.cls.defs.body:
        if not isinstance(stmt, AssignmentStmt):
            continue
        call = stmt.rvalue
        if not (isinstance(call, CallExpr) and isinstance(call.callee, RefExpr)
                and call.callee.fullname == KEY_FIELD):
            continue
        given = dict(zip(call.arg_names, call.args, strict=False))
        generated = True
        if "generated" in given:
            value = parse_bool(given["generated"])
            if value is None:
                ctx.api.fail('"generated" argument to key_field must be a True or False '
                             "literal", call, code=REDMODEL)
                continue
            generated = value
        if generated and "default" not in given and "factory" not in given:
            _add_argument(call, "factory", TempNode(AnyType(TypeOfAny.special_form)))
        elif not generated and "kw_only" not in given:
            _add_argument(call, "kw_only", _true(ctx))


def _declared(info: TypeInfo) -> dict[str, list[str]]:
    """The fields of ``info``'s own body declared as its key (``key_field()``,
    ``field(key=True)``) and with a ``codec=`` (not ``codec=None``)."""
    found: dict[str, list[str]] = {"key": [], "codec": []}
    for stmt in info.defn.defs.body:
        if not (isinstance(stmt, AssignmentStmt) and len(stmt.lvalues) == 1
                and isinstance(stmt.lvalues[0], NameExpr)):
            continue
        call = stmt.rvalue
        if not (isinstance(call, CallExpr) and isinstance(call.callee, RefExpr)
                and call.callee.fullname in (FIELD, KEY_FIELD)):
            continue
        name = stmt.lvalues[0].name
        given = dict(zip(call.arg_names, call.args, strict=False))
        if call.callee.fullname == KEY_FIELD or ("key" in given
                                                 and parse_bool(given["key"]) is True):
            found["key"].append(name)
        codec = given.get("codec")
        if codec is not None and not (isinstance(codec, NameExpr)
                                      and codec.fullname == "builtins.None"):
            found["codec"].append(name)
    return found


def _declared_of(info: TypeInfo) -> dict[str, list[str]]:
    """:func:`_declared`, from the metadata a model class keeps (mypy's cache holds it)."""
    recorded = info.metadata.get(METADATA)
    return recorded if isinstance(recorded, dict) else _declared(info)


def _add_argument(call: CallExpr, name: str, value: Expression) -> None:
    call.args.append(value)
    call.arg_names.append(name)
    call.arg_kinds.append(ARG_NAMED)


def _true(ctx: ClassDefContext) -> NameExpr:
    """A ``True`` the checker can read: bound as the semantic analyser binds one."""
    expr = NameExpr("True")
    symbol = ctx.api.lookup_fully_qualified("builtins.True")
    expr.node = symbol.node
    expr.kind = GDEF
    expr.fullname = "builtins.True"
    return expr


# -- incr --------------------------------------------------------------------------------------


# -- transaction functions ------------------------------------------------------------------


def _check_transaction_function(fullname: str, position: int,
                                 ctx: MethodContext | FunctionContext) -> Type:
    """The function given (at ``position``) to a transaction decorator, as run time
    refuses it when decorated: a generator function anywhere (TransactionError "is a
    generator function": its body would never run); an ``async def`` where the store is a
    sync ``Store`` (TransactionError "is an async def: its transaction needs an
    AsyncStore"). Known from the decorated ``def`` (or a name bound to one), else from the
    return type of the function's type (``Generator``, ``Coroutine``)."""
    func: FuncItem | None = None
    given = ctx.args[position][0] if len(ctx.args) > position and ctx.args[position] else None
    if isinstance(ctx.context, Decorator) and position == 0:
        func = ctx.context.func
    elif isinstance(given, RefExpr):
        node = given.node
        func = node.func if isinstance(node, Decorator) else \
            node if isinstance(node, FuncItem) else None
    returns = ""
    takes_async_tx = False  # of an AsyncTransaction: the overloads report it (arg-type)
    if len(ctx.arg_types) > position and ctx.arg_types[position]:
        proper = _as_callable(get_proper_type(ctx.arg_types[position][0]))
        if isinstance(proper, CallableType):
            ret = get_proper_type(proper.ret_type)
            returns = ret.type.fullname if isinstance(ret, Instance) else ""
            first = get_proper_type(proper.arg_types[0]) if proper.arg_types else None
            takes_async_tx = isinstance(first, Instance) and first.type.has_base(ASYNC_TX)
    name = f"{func.name} " if func is not None else ""
    if (func is not None and (func.is_generator or func.is_async_generator)) or returns in (
            "typing.Generator", "typing.AsyncGenerator"):
        ctx.api.fail(f"transaction function {name}is a generator function: a transaction "
                     "runs it to its return and then commits, so its body would never run; "
                     "return a value instead of yielding", ctx.context, code=REDMODEL)
    elif ((func is not None and func.is_coroutine) or returns == "typing.Coroutine") \
            and _sync_store(fullname, ctx) and not takes_async_tx:
        what = "an async def" if func is not None and func.is_coroutine else \
            "a function returning a coroutine"
        ctx.api.fail(f"transaction function {name}is {what}: a Store's transaction runs "
                     "sync functions of a Transaction; give it to an AsyncStore's "
                     "transaction (its first parameter an AsyncTransaction), or make it a "
                     "plain def", ctx.context, code=ARG_TYPE)
    return ctx.default_return_type


def _as_callable(tp: ProperType) -> ProperType:
    """A callable object's signature: a ``functools.partial`` as mypy's functools plugin
    keeps it (what is left to pass), else its ``__call__`` (bound); other types as they
    are. So a partial of an ``async def`` is seen to return a coroutine."""
    if not isinstance(tp, Instance):
        return tp
    if tp.extra_attrs is not None and "__mypy_partial" in tp.extra_attrs.attrs:
        partial = get_proper_type(tp.extra_attrs.attrs["__mypy_partial"])
        if isinstance(partial, CallableType):
            return partial
    call = find_member("__call__", tp, tp)
    call = get_proper_type(call) if call is not None else None
    return call if isinstance(call, CallableType) else tp


def _check_bind(ctx: MethodContext) -> Type:
    """``TransactionFunction.bind(store)`` of a function returning a coroutine (an ``async
    def`` of a ``Transaction``, which ``transaction(fn)`` types as a sync one) with a sync
    ``Store``: at run time it is an AsyncTransactionFunction, whose bind refuses a Store
    (TransactionError "is an async def: its transaction needs an AsyncStore")."""
    bound = get_proper_type(ctx.type)
    if not (isinstance(bound, Instance) and len(bound.args) == 2):
        return ctx.default_return_type
    ret = get_proper_type(bound.args[1])
    store = get_proper_type(ctx.arg_types[0][0]) if ctx.arg_types and ctx.arg_types[0] \
        else None
    if isinstance(ret, Instance) and ret.type.fullname == "typing.Coroutine" and \
            isinstance(store, Instance) and any(store.type.has_base(n) for n in SYNC_STORE):
        ctx.api.fail("bind: this transaction function is an async def (it returns a "
                     "coroutine): a Store's transaction runs sync functions of a "
                     "Transaction; bind it to an AsyncStore (its first parameter an "
                     "AsyncTransaction), or make it a plain def", ctx.context, code=ARG_TYPE)
    return ctx.default_return_type


def _sync_store(fullname: str, ctx: MethodContext | FunctionContext) -> bool:
    """Whether the transaction this decorator makes runs on a sync ``Store``: always for
    ``Store``'s methods, for ``TransactionDecorator[Store]`` (``transaction(store)``)."""
    if fullname in SYNC_ONLY:
        return True
    if not isinstance(ctx, MethodContext):
        return False
    bound = get_proper_type(ctx.type)
    if not (isinstance(bound, Instance) and bound.args):
        return False
    store = get_proper_type(bound.args[0])
    return isinstance(store, Instance) and any(store.type.has_base(name) for name in SYNC_STORE)


def _incr_type(ctx: MethodContext) -> Type:
    default = ctx.default_return_type
    info = _model_info(ctx.arg_types[0][0]) if ctx.arg_types and ctx.arg_types[0] else None
    path = _literal(ctx.args[2][0], ctx.arg_types[2][0]) if len(ctx.args) > 2 and ctx.args[2] \
        else None
    if info is None or path is None:
        return default
    numeric = _numeric_field(ctx, info, path)
    if numeric is None:
        return default
    if len(ctx.arg_types) > 3 and ctx.arg_types[3]:
        _check_amount(ctx, info, path, numeric, ctx.arg_types[3][0])
    exact = ctx.api.named_generic_type(numeric, [])
    proper = get_proper_type(default)
    if isinstance(proper, Instance) and proper.type.fullname == "typing.Coroutine":
        return proper.copy_modified(args=[*proper.args[:-1], exact])
    return exact


def _incr_fields(ctx: MethodContext) -> Type:
    """The literal keys of ``changes``, ``floor`` and ``ceiling`` name numeric fields; an
    int field's change is no float (a bound may be: it is rounded inwards)."""
    info = _model_info(ctx.arg_types[0][0]) if ctx.arg_types and ctx.arg_types[0] else None
    if info is None:
        return ctx.default_return_type
    for position in (2, 3, 4):
        if len(ctx.args) <= position or not ctx.args[position]:
            continue
        given = ctx.args[position][0]
        if not isinstance(given, DictExpr):
            continue
        for key, value in given.items:
            if not isinstance(key, StrExpr):
                continue
            numeric = _numeric_field(ctx, info, key.value)
            if numeric is not None and position == 2:
                _check_amount(ctx, info, key.value, numeric, ctx.api.get_expression_type(value))
    return ctx.default_return_type


def _check_amount(ctx: MethodContext, info: TypeInfo, path: str, numeric: str,
                  amount: Type) -> None:
    """Rule 4 of increment_kind: an int field takes an int; no field takes a bool."""
    proper = get_proper_type(amount)
    if isinstance(proper, LiteralType):
        proper = proper.fallback
    if not isinstance(proper, Instance):
        return
    if proper.type.fullname == "builtins.bool":
        ctx.api.fail(f'incr adds a number to "{info.name}.{path}", not "bool"', ctx.context,
                     code=REDMODEL)
    elif numeric == "builtins.int" and proper.type.fullname == "builtins.float":
        ctx.api.fail(f'incr of the int field "{info.name}.{path}" needs an int amount, '
                     'not "float"', ctx.context, code=REDMODEL)


def _model_info(tp: Type) -> TypeInfo | None:
    proper = get_proper_type(tp)
    if isinstance(proper, CallableType) and proper.is_type_obj():
        return proper.type_object()
    if isinstance(proper, TypeType) and isinstance(proper.item, Instance):
        return proper.item.type
    return None


def _literal(expr: Expression, tp: Type) -> str | None:
    if isinstance(expr, StrExpr):
        return expr.value
    proper = get_proper_type(tp)
    if isinstance(proper, Instance) and proper.last_known_value is not None:
        proper = proper.last_known_value
    if isinstance(proper, LiteralType) and isinstance(proper.value, str):
        return proper.value
    return None


def _numeric_field(ctx: MethodContext, info: TypeInfo, path: str) -> str | None:
    """``builtins.int``/``builtins.float`` for the field at ``path`` when increment_kind
    (redmodel._models._specs) accepts it; reports an error and returns None when it does
    not (rules 1 to 3), None without an error when the field's type is unknown (Any)."""
    owner: TypeInfo | None = info
    parts = path.split(".")
    field_type: ProperType | None = None
    for depth, part in enumerate(parts):
        node = owner.get(part) if owner is not None else None
        declared = _declared_of(node.node.info) if node is not None \
            and isinstance(node.node, Var) else None
        if (node is None or not isinstance(node.node, Var) or node.node.type is None
                or declared is None or (depth == 0 and part in declared["key"])):
            ctx.api.fail(f'"{info.name}" has no field "{path}" to increment', ctx.context,
                         code=REDMODEL)
            return None
        if part in declared["codec"]:
            ctx.api.fail(f'incr needs an int or float field; "{info.name}.{path}" is not one '
                         "(it has a codec)", ctx.context, code=REDMODEL)
            return None
        whole = get_proper_type(node.node.type)
        field_type = _without_none(whole)
        if isinstance(field_type, AnyType):
            return None
        if depth < len(parts) - 1:
            nested = isinstance(field_type, Instance) and "attrs" in field_type.type.metadata
            if nested and field_type is not whole:
                ctx.api.fail(f'incr needs an int or float field; "{info.name}.{path}" is not '
                             f'one ("{".".join(parts[:depth + 1])}" is Optional: stored whole)',
                             ctx.context, code=REDMODEL)
                return None
            owner = field_type.type if nested and isinstance(field_type, Instance) else None
    if isinstance(field_type, Instance) and field_type.type.fullname in (
        "builtins.int", "builtins.float"
    ):
        return field_type.type.fullname
    ctx.api.fail(f'incr needs an int or float field; "{info.name}.{path}" is not one',
                 ctx.context, code=REDMODEL)
    return None


def _without_none(tp: ProperType) -> ProperType:
    """``int`` for ``int | None``: incr adds to the stored number."""
    if isinstance(tp, UnionType):
        rest = [t for t in map(get_proper_type, tp.items) if not isinstance(t, NoneType)]
        if len(rest) == 1:
            return rest[0]
    return tp

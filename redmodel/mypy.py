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

* Every method that takes a model (``Store``, ``AsyncStore``, ``Transaction``,
  ``AsyncTransaction``: one rule, by the method's parameter names, :func:`_model_call`):
  a class that is not a ``@redmodel.model`` (ModelDefinitionError at run time), an object
  of one; an id not of the key field's type; a ``str``/``bytes`` as ``ids``/``objs``;
  ``update``'s keywords that are no stored field, the key, or of the wrong type. A stored
  field is one the class's ``__init__`` takes (attrs' own record of the class), so a
  ClassVar, an unannotated class attribute or an ``init=False`` attribute is none.
  ``tx.incr`` is ``Pending[int]``/``Pending[float]`` and ``tx.get_field`` the field's
  type ``| None``, checked as ``store.incr`` is. A value is judged as the run time's
  checker judges it (:func:`_refused`: containers item by item; a display by what it
  holds, :func:`_display`). Also through ``super()``, a bound method held in a variable
  and a receiver typed by a type variable bound to a store; not on a receiver that may be
  no store.
* A container's members and ``Codec.decode``'s type given as a union ``A | B``: the
  container (the decoded value) is typed by the union, where the declared overload for a
  ``types.UnionType`` says ``Any``.

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

import datetime as dt
import functools
from collections.abc import Callable

from mypy.erasetype import erase_typevars
from mypy.errorcodes import ARG_TYPE, ErrorCode
from mypy.maptype import map_instance_to_supertype
from mypy.messages import format_type_bare
from mypy.nodes import (
    ARG_NAMED,
    ARG_POS,
    ARG_STAR,
    ARG_STAR2,
    GDEF,
    AssignmentStmt,
    CallExpr,
    Decorator,
    DictExpr,
    Expression,
    FakeInfo,
    FloatExpr,
    FuncItem,
    GeneratorExpr,
    IndexExpr,
    IntExpr,
    ListComprehension,
    ListExpr,
    MemberExpr,
    NameExpr,
    OpExpr,
    RefExpr,
    SetComprehension,
    SetExpr,
    StarExpr,
    StrExpr,
    TempNode,
    TupleExpr,
    TypeApplication,
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
from mypy.subtypes import find_member, is_subtype
from mypy.typeops import make_simplified_union
from mypy.types import (
    AnyType,
    CallableType,
    FunctionLike,
    Instance,
    LiteralType,
    NoneType,
    ProperType,
    TupleType,
    Type,
    TypedDictType,
    TypeOfAny,
    TypeType,
    TypeVarLikeType,
    TypeVarType,
    UninhabitedType,
    UnionType,
    UnpackType,
    get_proper_type,
)
from mypy.typevars import fill_typevars_with_any

__all__ = ["plugin"]

FIELD = "redmodel._models._schema.field"
KEY_FIELD = "redmodel._models._schema.key_field"
MODEL = "redmodel._models._schema.model"
#: info.metadata key: {"key": [field names], "codec": [field names]} of a model class.
METADATA = "redmodel"
#: info.metadata key present on a class decorated with ``@redmodel.model`` itself (what
#: run time's ``spec_of`` accepts: a subclass of a model is no model until decorated).
MODEL_METADATA = "redmodel.model"
#: info.metadata key present on a class with a decorator this plugin cannot see through (a
#: user's function, a dataclass_transform wrapper): it may make the class a model at run
#: time, so the class is not judged (no "not a model" error, no field or id checks).
MAYBE_MODEL = "redmodel.maybe"
#: Class decorators known to make no model (any other may call ``redmodel.model``).
NOT_MODEL_MAKERS = frozenset({
    "dataclasses.dataclass", "typing.final", "typing_extensions.final",
    "functools.total_ordering", "typing.runtime_checkable",
    "typing_extensions.runtime_checkable", "typing.type_check_only"})
TEXT = ("builtins.str", "builtins.bytes")
#: attrs' default factories: a field's default, never its key.
FACTORIES = ("attr.Factory", "attrs.Factory", "attr._make.Factory")
#: The names of a model method's positional-only parameters (``update(model, id, /,
#: **values)``: a field may be called ``model``), in order.
POSITIONAL_ONLY = {"update": ("model", "id")}
#: The classes whose methods take models: their parameters named ``model``, ``id``,
#: ``ids``, ``obj``, ``objs``, ``field``, ``changes``/``floor``/``ceiling`` and ``**values``
#: are checked by one rule (:func:`_model_call`), whichever shell the method is on.
MODEL_SHELLS = ("redmodel._stores._sync.Store", "redmodel._stores._async.AsyncStore",
                "redmodel.transactions._handles._TxBase")
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
PENDING = "redmodel.transactions._policy.Pending"
#: A sync store, as TransactionDecorator[...] holds it (transaction()'s protocol, or the class).
SYNC_STORE = ("redmodel.transactions._handles.Store", "redmodel._stores._sync.Store")
#: Where the store is a sync Store whatever the call: an async def there is refused.
SYNC_ONLY = ("redmodel._stores._sync.Store.transaction", "redmodel._stores._sync.Store.transact",
             "redmodel.transactions._run.transact")
#: A sync transaction function's bind: given a Store, refused for an async def at run time.
BIND = "redmodel.transactions._run.TransactionFunction.bind"
#: A container class (its members' type may be a union ``A | B``), and Codec.decode.
CONTAINER = "redmodel.containers._base.Container"
DECODE = "redmodel.codecs._base.Codec.decode"
#: method name -> the methods of that name this plugin checks (also called on a subclass)
HOOKED_METHODS: dict[str, set[str]] = {}
for _method in (*TRANSACTION_DECORATORS, BIND, DECODE):
    HOOKED_METHODS.setdefault(_method.rpartition(".")[2], set()).add(_method)
#: attrs' class decorators (mypy's attrs plugin tags the classes they make).
ATTRS_CLASS_MAKERS = frozenset(attr_class_makers | attr_dataclass_makers | attr_frozen_makers
                               | attr_define_makers)

#: What a model method's checks get: a method hook's context, or a function hook's for a
#: bound method called through a variable (``get = store.get``; ``get(Hat, id)``).
ModelContext = MethodContext | FunctionContext

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
        if fullname in ATTRS_CLASS_MAKERS:
            return _desugar_attrs_class
        return None if fullname in NOT_MODEL_MAKERS else _other_decorator

    def get_method_hook(self, fullname: str) -> Callable[[MethodContext], Type] | None:
        if " of " in fullname:
            # a method called on a value typed by a type variable (``where: T``, ``T =
            # TypeVar("T", bound=Store)``): mypy has no class to name it by and asks for
            # ``"get of Store"`` (the callee's name); the receiver is judged as its bound
            return functools.partial(_type_variable_call, fullname.partition(" of ")[0])
        fullname = self._defined_at(fullname)
        if fullname in TRANSACTION_DECORATORS:
            return functools.partial(_check_transaction_function, fullname,
                                     TRANSACTION_DECORATORS[fullname])
        if fullname == BIND:
            return _check_bind
        if fullname == DECODE:
            return _decode_union
        owner, _, name = fullname.rpartition(".")
        symbol = self.lookup_fully_qualified(owner) if owner else None
        if symbol is not None and isinstance(symbol.node, TypeInfo) and any(
                symbol.node.has_base(shell) for shell in MODEL_SHELLS):
            # only redmodel's own methods: a user's subclass of a store may define (or
            # override) methods whose parameters share the names (attack 31N F1)
            defined = symbol.node.get_containing_type_info(name)
            if defined is not None and defined.fullname.startswith("redmodel."):
                return functools.partial(_model_call, name)
        return None

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
        symbol = self.lookup_fully_qualified(fullname) if "." in fullname else None
        if symbol is not None and isinstance(symbol.node, TypeInfo) and \
                symbol.node.has_base(CONTAINER):
            return _container_of_union
        if "." not in fullname or (symbol is not None and isinstance(symbol.node, Var)):
            # a variable (a local one's name has no module) may hold a store's bound
            # method; a call mypy has no full name for (``super().get(...)``) comes here
            # under the callee's bare name. Only these, so that mypy's own hooks on
            # functions (its default plugin comes after this one) stay in place
            return _bound_model_call
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


def _desugar_model(ctx: ClassDefContext, call: Expression | None = None) -> None:
    """A ``@redmodel.model`` class: desugared here unless an attrs decorator of its own
    does it (so that an error about a call is reported once). The ``key=`` option the
    decorator call (``call``, else ``ctx.reason``) gives is recorded: a name, ``None``
    (given, so not inherited), or ``"?"`` when it is no literal (ids are then not
    judged)."""
    callees = (d.callee if isinstance(d, CallExpr) else d for d in ctx.cls.decorators)
    attrs_decorated = any(isinstance(c, RefExpr) and c.fullname in ATTRS_CLASS_MAKERS
                          for c in callees)
    call = ctx.reason if call is None else call
    options: dict[str, str | None] = {}
    if isinstance(call, CallExpr):
        for name, arg in zip(call.arg_names, call.args, strict=False):
            if name == "key":
                options["key"] = arg.value if isinstance(arg, StrExpr) else None if (
                    isinstance(arg, NameExpr) and arg.fullname == "builtins.None") else "?"
            elif name is None:  # **options: what they give is unknown here
                options["key"] = "?"
    ctx.cls.info.metadata[MODEL_METADATA] = options
    if attrs_decorated:
        ctx.cls.info.metadata[METADATA] = _declared(ctx.cls.info)
    else:
        _desugar_key_fields(ctx)


def _other_decorator(ctx: ClassDefContext) -> None:
    """A class decorator this plugin does not know. A ``redmodel.model(...)`` call kept in
    a variable (``cached = redmodel.model(ttl=60)``, then ``@cached``) found in its
    module's body is the model decorator; anything else may make the class a model at run
    time (a wrapper calling ``redmodel.model``), so the class is marked "not judged". Its
    key_field() calls get what they imply (a dataclass_transform wrapper of attrs reads
    them as attrs does), and what its body declares is recorded."""
    call = _model_call_in_variable(ctx)
    if call is not None:
        _desugar_model(ctx, call)
        return
    ctx.cls.info.metadata[MAYBE_MODEL] = {}
    if METADATA not in ctx.cls.info.metadata:
        _desugar_key_fields(ctx)


def _model_call_in_variable(ctx: ClassDefContext) -> CallExpr | None:
    """The ``redmodel.model(...)`` call a decorator variable was assigned, once, at the top
    level of its module (when the module's body is at hand: not from mypy's cache)."""
    decorator = ctx.reason
    if not (isinstance(decorator, NameExpr) and isinstance(decorator.node, Var)):
        return None
    var = decorator.node
    module = ctx.api.modules.get(var.fullname.rpartition(".")[0]) \
        if hasattr(ctx.api, "modules") else None
    if module is None:
        return None
    found = [stmt.rvalue for stmt in module.defs if isinstance(stmt, AssignmentStmt)
             and any(isinstance(lv, NameExpr) and lv.name == var.name for lv in stmt.lvalues)]
    if len(found) == 1 and isinstance(found[0], CallExpr) and isinstance(
            found[0].callee, RefExpr) and found[0].callee.fullname == MODEL:
        return found[0]
    return None


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
    ``field(key=True)``), with a ``codec=`` (not ``codec=None``), and ``maybe_key``: those
    that may be declared the key in a way not read here (a call of another function, a
    ``key=`` that is no literal, ``**options``)."""
    found: dict[str, list[str]] = {"key": [], "codec": [], "maybe_key": []}
    for stmt in info.defn.defs.body:
        if not (isinstance(stmt, AssignmentStmt) and len(stmt.lvalues) == 1
                and isinstance(stmt.lvalues[0], NameExpr)):
            continue
        call = stmt.rvalue
        if not isinstance(call, CallExpr):
            continue
        name = stmt.lvalues[0].name
        callee = call.callee.fullname if isinstance(call.callee, RefExpr) else ""
        if callee not in (FIELD, KEY_FIELD):
            if callee not in attr_attrib_makers and callee not in FACTORIES and not (
                    isinstance(call.callee, RefExpr) and isinstance(call.callee.node, TypeInfo)):
                found["maybe_key"].append(name)
            continue
        given = dict(zip(call.arg_names, call.args, strict=False))
        if callee == FIELD and (None in call.arg_names or (
                "key" in given and parse_bool(given["key"]) is None)):
            found["maybe_key"].append(name)
        if callee == KEY_FIELD or ("key" in given and parse_bool(given["key"]) is True):
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


# -- types given as values: A | B ------------------------------------------------------------


def _container_of_union(ctx: FunctionContext) -> Type:
    """``Queue(store, key, IPv4Address | IPv6Address)``: a container of the union (the
    declared overload for a ``types.UnionType`` leaves the members ``Any``)."""
    default = ctx.default_return_type
    position = ctx.callee_arg_names.index("type") if "type" in ctx.callee_arg_names else -1
    members = _union_given(ctx, position)
    proper = get_proper_type(default)
    if members is None or not (isinstance(proper, Instance) and proper.args):
        return default
    return proper.copy_modified(args=[members, *proper.args[1:]])


def _decode_union(ctx: MethodContext) -> Type:
    """``codec.decode(data, int | None)``: the union (the declared overload for a
    ``types.UnionType`` is ``Any``)."""
    position = ctx.callee_arg_names.index("tp") if "tp" in ctx.callee_arg_names else -1
    members = _union_given(ctx, position)
    return ctx.default_return_type if members is None else members


def _union_given(ctx: MethodContext | FunctionContext, position: int) -> Type | None:
    """The type an argument written ``A | B`` (classes, generic aliases, None) stands for."""
    if position < 0 or position >= len(ctx.args) or len(ctx.args[position]) != 1:
        return None
    expr = ctx.args[position][0]
    return _type_written(ctx, expr) if isinstance(expr, OpExpr) else None


def _type_written(ctx: MethodContext | FunctionContext, expr: Expression) -> Type | None:
    """The type the expression ``expr`` names, or None when it names none this can read:
    ``A | B`` of such, ``None``, a class (its type parameters ``Any``), a generic alias
    (``list[int]``)."""
    if isinstance(expr, OpExpr):
        if expr.op != "|":
            return None
        left, right = _type_written(ctx, expr.left), _type_written(ctx, expr.right)
        if left is None or right is None:
            return None
        return make_simplified_union([left, right])
    if isinstance(expr, NameExpr) and expr.fullname == "builtins.None":
        return NoneType()
    if isinstance(expr, IndexExpr) and isinstance(expr.analyzed, TypeApplication):
        base = get_proper_type(_type_written(ctx, expr.base))  # list[int]: its arguments
        if isinstance(base, Instance) and len(base.args) == len(expr.analyzed.types):
            return base.copy_modified(args=expr.analyzed.types)
        return None
    tp = get_proper_type(ctx.api.get_expression_type(expr))
    if isinstance(tp, CallableType) and tp.is_type_obj():  # a class, or an alias list[int]
        return erase_typevars(tp.ret_type)
    if isinstance(tp, FunctionLike) and tp.is_type_obj():  # a class of several constructors
        return fill_typevars_with_any(tp.type_object())
    if isinstance(tp, TypeType):
        return tp.item
    return None


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


def _model_call(method: str, ctx: ModelContext) -> Type:
    """A method of a store or a transaction that takes a model, checked by its parameters'
    names (one rule for Store, AsyncStore, Transaction and AsyncTransaction), as run time
    checks it before anything is sent:

    * ``model``: a class decorated with ``@redmodel.model`` (else ModelDefinitionError);
      ``obj`` and the items of ``objs``: instances of one;
    * ``ids`` and ``objs``: an iterable but no ``str``/``bytes`` (ValidationError: one
      id's characters are not ids);
    * ``id`` and the items of ``ids``: of the key field's type (``bool`` is no ``int``);
    * ``**values`` (``update``): stored fields other than the key, each of its field's
      type; at least one;
    * ``field`` (``incr``, ``get_field``) and the literal keys of ``changes``, ``floor``,
      ``ceiling`` (``incr_fields``): stored fields (dotted paths into nested attrs
      classes), numeric for the increments (:func:`_numeric_field`).

    The return type is made exact where it depends on the field: ``incr`` the field's
    ``int``/``float``, ``get_field`` its type ``| None``; inside the declared
    ``Coroutine``/``Pending`` of the shell."""
    default = ctx.default_return_type
    if isinstance(ctx, MethodContext) and not _store_receiver(ctx, method):
        return default
    unnamed = iter(POSITIONAL_ONLY.get(method, ()))  # mypy names no positional-only one
    params = {name if name is not None else next(unnamed, ""): i
              for i, name in enumerate(ctx.callee_arg_names)}
    info: TypeInfo | None = None
    if "model" in params:
        given = _arg_type(ctx, params["model"])
        info, exact_class = _model_info(given) if given is not None else (None, False)
        if info is not None and not _is_model(info):
            if exact_class and MAYBE_MODEL not in info.metadata:
                ctx.api.fail(f'"{info.name}" is not a redmodel model (decorate the attrs class '
                             "with @redmodel.model)", ctx.context, code=REDMODEL)
            return default  # type[Base], type[Protocol], type[object]: may be a model
    if "obj" in params and (given := _arg_type(ctx, params["obj"])) is not None:
        _check_objects(ctx, ctx.args[params["obj"]][0], given)
    for many in ("ids", "objs"):
        if many in params and (given := _arg_type(ctx, params[many])) is not None:
            text = _check_not_text(ctx, many, given)
            if many == "objs" and not text:
                for expr, item in _item_types(ctx, params[many], given):
                    _check_objects(ctx, expr, item)
    if info is None:
        return default
    key = _key_field(info)
    if key is not None:
        if "id" in params:
            _check_value(ctx, info, key, _arg_type(ctx, params["id"]), "id")
        if "ids" in params and (given := _arg_type(ctx, params["ids"])) is not None \
                and not any(isinstance(m, Instance) and m.type.fullname in TEXT
                            for m in _members(given)):
            _check_ids(ctx, info, key, params["ids"], given)
    if method == "update" and "values" in params:
        _check_update(ctx, info, key, params["values"])
    exact: Type | None = None
    if method in ("incr", "get_field") and "field" in params:
        position = params["field"]
        path = _literal(ctx.args[position][0], ctx.arg_types[position][0]) \
            if _arg_type(ctx, position) is not None else None
        if path is not None and method == "incr":
            numeric = _numeric_field(ctx, info, path, key)
            if numeric is not None:
                if "amount" in params and (amount := _arg_type(ctx, params["amount"])):
                    _check_amount(ctx, info, path, numeric, amount)
                exact = ctx.api.named_generic_type(numeric, [])
        elif path is not None:
            leaf = _field_type(ctx, info, path, key, "read")
            if leaf is not None:
                exact = UnionType.make_union([leaf, NoneType()])
    elif method == "incr_fields":
        _incr_fields(ctx, info, key, params)
    return default if exact is None else _returning(default, exact)


def _bound_model_call(ctx: FunctionContext) -> Type:
    """A call of a variable holding a bound method of a store or transaction (``get =
    store.get``, then ``get(Hat, "1")``), or of ``super().get`` in a store's subclass:
    mypy runs no method hook there, so the bound method's signature (its definition, from
    the checker's type map) says which method it is, and :func:`_model_call` checks it as
    ``store.get(Hat, "1")`` (attack 32B F5)."""
    call = ctx.context
    lookup = getattr(ctx.api, "lookup_type_or_none", None)
    callee = lookup(call.callee) if isinstance(call, CallExpr) and lookup is not None \
        else None
    proper = get_proper_type(callee) if callee is not None else None
    definition = proper.definition if isinstance(proper, CallableType) else None
    if not (isinstance(definition, FuncItem) and definition.fullname.startswith("redmodel.")
            and not isinstance(definition.info, FakeInfo)  # a function, not a method
            and any(definition.info.has_base(shell) for shell in MODEL_SHELLS)):
        return ctx.default_return_type
    return _model_call(definition.name, ctx)


def _type_variable_call(method: str, ctx: MethodContext) -> Type:
    """``where.get(Hat, "1")`` with ``where: T``, ``T = TypeVar("T", bound=Store)`` (also
    ``self.where`` of a ``Generic[T]`` class): mypy runs the hook named by the callee
    (``"get of Store"``), as for any receiver it has no class for; the call is judged when
    the receiver is a type variable whose bound is a store or transaction with redmodel's
    ``method`` (its value is then one: attack 33B F8), else left alone."""
    receiver = get_proper_type(ctx.type)
    bound = get_proper_type(receiver.upper_bound) if isinstance(receiver, TypeVarType) \
        else None
    if not isinstance(bound, Instance):
        return ctx.default_return_type
    defined = bound.type.get_containing_type_info(method)
    if defined is None or not defined.fullname.startswith("redmodel.") or not any(
            bound.type.has_base(shell) for shell in MODEL_SHELLS):
        return ctx.default_return_type
    return _model_call(method, ctx)


def _store_receiver(ctx: MethodContext, method: str) -> bool:
    """Whether the object the method is called on is certainly a store or transaction
    whose ``method`` is redmodel's. mypy calls a method hook once per member of a union
    receiver (``where: Store | Cache``, ``where.get(...)``) and tells the hook only that
    member: the receiver's own type, from the checker's type map, says whether another
    member (a class of the user's, ``Any``) may take the call (attack 32B F4)."""
    call = ctx.context
    if not (isinstance(call, CallExpr) and isinstance(call.callee, MemberExpr)):
        return True
    lookup = getattr(ctx.api, "lookup_type_or_none", None)
    receiver = lookup(call.callee.expr) if lookup is not None else None
    if receiver is None:
        return True
    for member in _members(receiver):
        item = get_proper_type(member.upper_bound) if isinstance(member, TypeVarType) \
            else member
        if not isinstance(item, Instance):
            return False
        defined = item.type.get_containing_type_info(method)
        if defined is None or not defined.fullname.startswith("redmodel.") or not any(
                item.type.has_base(shell) for shell in MODEL_SHELLS):
            return False
    return True


def _arg_type(ctx: ModelContext, position: int) -> Type | None:
    """The type of the one argument given for the parameter at ``position``, if one is; not
    for ``*args``/``**kwargs`` (their type is the container's: what the parameter gets is
    not known here, the run time checks it)."""
    if position < len(ctx.arg_types) and len(ctx.arg_types[position]) == 1 \
            and ctx.arg_kinds[position][0] not in (ARG_STAR, ARG_STAR2):
        return ctx.arg_types[position][0]
    return None


def _returning(default: Type, exact: Type) -> Type:
    """``exact`` in place of the value the declared return type holds: the last argument
    of a ``Coroutine`` (an async shell), the argument of a ``Pending`` (a transaction's
    write), else ``exact`` itself."""
    proper = get_proper_type(default)
    if isinstance(proper, Instance) and proper.type.fullname in (
            "typing.Coroutine", PENDING) and proper.args:
        inner = _returning(proper.args[-1], exact)
        return proper.copy_modified(args=[*proper.args[:-1], inner])
    return exact


def _is_model(info: TypeInfo) -> bool:
    return MODEL_METADATA in info.metadata


def _judged(info: TypeInfo) -> bool:
    """Whether ``info``'s objects and class are judged: a model, or a class no decorator
    this plugin cannot see through may have made one."""
    return _is_model(info) or MAYBE_MODEL not in info.metadata


def _members(tp: Type) -> list[ProperType]:
    """The types a value of ``tp`` may be: a union's members, a literal's class."""
    proper = get_proper_type(tp)
    items = [get_proper_type(t) for t in proper.items] if isinstance(proper, UnionType) \
        else [proper]
    return [item.fallback if isinstance(item, LiteralType) else item for item in items]


def _check_objects(ctx: ModelContext, expr: Expression | None, tp: Type | None) -> None:
    """An object (``expr``, of type ``tp``) of a class that is certainly no model: made
    right there (``Plain()``) or of a ``@final`` class. A static type is an upper bound:
    an object typed by a plain base or mixin (``Entity``, ``self`` in a mixin's method) may
    be of a model subclass, so it is not judged; nor are ``object``, protocols, Any and
    type variables."""
    for item in _members(tp) if tp is not None else []:
        if not isinstance(item, Instance) or _is_model(item.type) or item.type.is_protocol \
                or item.type.fullname == "builtins.object" or not _judged(item.type):
            continue
        made = isinstance(expr, CallExpr) and isinstance(expr.callee, RefExpr) \
            and expr.callee.node is item.type
        if not (made or item.type.is_final):
            continue
        ctx.api.fail(f'"{item.type.name}" is not a redmodel model (decorate the attrs class '
                     "with @redmodel.model); only a model's objects are saved", ctx.context,
                     code=REDMODEL)


def _check_not_text(ctx: ModelContext, what: str, tp: Type) -> bool:
    """``ids``/``objs`` of a ``str``, ``bytes``, ``bytearray`` or ``memoryview`` (every
    member of a union one of them: only what is certainly text): refused at run time, its
    characters are not ids (attack 31N F2/F4)."""
    members = _members(tp)
    texts = [item for item in members if isinstance(item, Instance) and any(
        item.type.has_base(f"builtins.{text}")
        for text in ("str", "bytes", "bytearray", "memoryview"))]
    if not texts or len(texts) != len(members):
        return False
    one = "id" if what == "ids" else "object"
    ctx.api.fail(f'"{what}" must be an iterable such as a list, not "{texts[0].type.name}" '
                 f"(one {one}: its characters are not {one}s); wrap it: [{one}]",
                 ctx.context, code=REDMODEL)
    return True


def _check_ids(ctx: ModelContext, info: TypeInfo, key: tuple[str, Type], position: int,
               tp: Type) -> None:
    """The ids of ``get_many``/``delete_many`` (the argument at ``position``, of type
    ``tp``): each of the key field's type. A display's items as :func:`_display` gives them
    (a starred part by what it gives); a set display's (and a dict display's keys) by the
    equal-item rule, as a set field's value is judged (``{1, True}`` asks for ``1``)."""
    expr = ctx.args[position][0]
    shown = _display(ctx, expr)
    if shown is None:
        for _, item in _item_types(ctx, position, tp):
            _check_value(ctx, info, key, item, "id")
        return
    if isinstance(expr, DictExpr):  # iterating a dict gives its keys
        shown = [_collapse(shown[0::2])]
    elif _set_like(expr):
        shown = [_collapse(shown)]
    for part, part_type in shown:
        _check_value(ctx, info, key, part_type, "id", part)


def _item_types(ctx: ModelContext, position: int, tp: Type
                ) -> list[tuple[Expression | None, Type | None]]:
    """The types of what an argument gives when iterated: of each item of a list, tuple or
    set display, of the element of a generator expression or comprehension (mypy infers
    the display or generator itself from the parameter's ``Iterable[Any]``: ``list[Any]``),
    else what iterating its type gives."""
    expr = ctx.args[position][0]
    if isinstance(expr, (ListExpr, TupleExpr, SetExpr)):
        return [(item, ctx.api.get_expression_type(item)) for item in expr.items
                if not isinstance(item, StarExpr)]
    if isinstance(expr, (ListComprehension, SetComprehension)):
        expr = expr.generator
    if isinstance(expr, GeneratorExpr):
        lookup = getattr(ctx.api, "lookup_type_or_none", None)  # the checker's type map
        return [(expr.left_expr, lookup(expr.left_expr) if lookup is not None else None)]
    return [(None, _item_type(ctx, tp))]


def _item_type(ctx: ModelContext, tp: Type) -> Type | None:
    """What iterating ``tp`` gives, when ``tp`` is an instance of an ``Iterable``."""
    proper = get_proper_type(tp)
    if not isinstance(proper, Instance):
        return None
    iterable = ctx.api.named_generic_type("typing.Iterable", [AnyType(TypeOfAny.special_form)])
    if not proper.type.has_base(iterable.type.fullname):
        return None
    mapped = map_instance_to_supertype(proper, iterable.type)
    return mapped.args[0] if mapped.args else None


def _key_field(info: TypeInfo) -> tuple[str, Type] | None:
    """The key field's name and declared type as run time's ``model()`` finds it
    (redmodel._models._schema: ``_compile``, ``_key_name``): the ``key=`` option of the
    nearest ``@redmodel.model`` class of the MRO that gave one (the class itself first: a
    decorated subclass inherits its base's options); without one (or ``key=None``), the
    one stored field declared ``key_field()``/``field(key=True)`` in any class of the MRO;
    else a stored field named ``id``. None when that is not known for certain (a ``key=``
    that is no literal, fields this plugin cannot read): ids are then not judged."""
    names = _init_fields(info)
    if names is None:
        return None
    option: str | None = None
    for base in info.mro:
        recorded = base.metadata.get(MODEL_METADATA)
        if isinstance(recorded, dict) and "key" in recorded:
            option = recorded["key"]
            break
    if option == "?":
        return None
    if option is None:
        marked, maybe = [], False
        for name in names:
            node = info.get(name)
            var = node.node if node is not None else None
            if not isinstance(var, Var):
                maybe = True
                continue
            declared = _declared_of(var.info)
            if name in declared["key"]:
                marked.append(name)
            elif name in declared.get("maybe_key", ()):
                maybe = True
        if maybe and not marked:  # (with one marked, another key is refused at run time)
            return None
        option = marked[0] if len(marked) == 1 else "id" if not marked else None
    if option is None or option not in names:
        return None  # run time refuses the model (no key, two keys): not judged here
    node = info.get(option)
    if node is not None and isinstance(node.node, Var) and node.node.type is not None:
        return option, node.node.type
    return None


def _init_fields(owner: TypeInfo) -> list[str] | None:
    """The names of the attributes the attrs class ``owner``'s ``__init__`` takes (mypy's
    attrs plugin's record, or its dataclass_transform one for a class made attrs by a
    wrapper declared with ``@dataclass_transform``); None when neither is known."""
    if "attrs" in owner.metadata:
        return [a["name"] for a in owner.metadata["attrs"].get("attributes", [])
                if a.get("init", True)]
    if "dataclass" in owner.metadata:
        return [a["name"] for a in owner.metadata["dataclass"].get("attributes", [])
                if a.get("is_in_init", True)]
    return None


def _stored(owner: TypeInfo, name: str) -> Var | bool | None:
    """The attribute ``name`` of the attrs class ``owner`` if it is a stored field: one its
    ``__init__`` takes (docs/models.md: "A model stores only the fields its constructor
    takes"); never a ClassVar, an unannotated class attribute or an ``init=False`` one.
    ``name`` is the attribute's name (a ``field(name=...)`` renames only what is stored).
    True when ``owner``'s fields are not known (not judged)."""
    names = _init_fields(owner)
    if names is None:
        return True
    if name not in names:
        return None
    node = owner.get(name)
    return node.node if node is not None and isinstance(node.node, Var) else None


#: The container classes run time's checker walks item by item (redmodel._models._types
#: ``make_checker``): the value must be an instance of the class, each item of its type.
CONTAINERS = ("builtins.list", "builtins.set", "builtins.frozenset", "builtins.tuple",
              "builtins.dict")


def _check_value(ctx: ModelContext, info: TypeInfo,
                 field: tuple[str, Type], given: Type | None, what: str,
                 expr: Expression | _Collapsed | None = None) -> None:
    """A value (``expr``, of type ``given``) of ``field``'s declared type: refused only
    when run time's check (:func:`_refused`) certainly refuses it."""
    if given is None or not _refused(ctx, given, field[1], expr):
        return
    name, declared = field
    shown = "the id" if what == "id" else f'"{name}"'
    ctx.api.fail(f'{shown} of "{info.name}" is "{format_type_bare(declared, ctx.api.options)}"'
                 f', not "{format_type_bare(_as_given(ctx, given, expr), ctx.api.options)}"',
                 ctx.context, code=REDMODEL)


def _as_given(ctx: ModelContext, given: Type, expr: Expression | _Collapsed | None) -> Type:
    """``given`` for a message: a display's type by its items, at every depth, each class
    named (mypy types ``[1, True]`` and ``[*ints, True]`` a ``list[int]``, and
    ``frozenset({True})`` given where ``Any`` is expected a ``frozenset[Any]``: here they are
    ``list[int | bool]`` and ``frozenset[bool]``, so the message names the refused item's
    class)."""
    if isinstance(expr, _Collapsed):
        return _shown_union(ctx, [_as_given(ctx, tp, e) for e, tp in _flat(expr.entries)])
    proper = get_proper_type(given)
    shown = _display(ctx, expr)
    if not (shown and isinstance(proper, Instance) and proper.args):
        return given
    spelled = not _variadic(shown)
    types = [_as_given(ctx, tp, e) for e, tp in _flat(shown)]
    if len(proper.args) == 2 and isinstance(expr, DictExpr):  # a dict: keys, values in turn
        return proper.copy_modified(args=[_shown_union(ctx, types[0::2]),
                                          _shown_union(ctx, types[1::2])])
    if len(proper.args) != 1:
        return given
    if proper.type.fullname == "builtins.tuple" and spelled:
        return TupleType(types, proper)  # ``(1, *[2, 3])``: ``tuple[int, int, int]``
    return proper.copy_modified(args=[_shown_union(ctx, types)])


def _shown_union(ctx: ModelContext, types: list[Type]) -> Type:
    """The union of ``types`` as written, each named once (``int | bool``: no member taken
    into another, as a simplified union would take ``bool`` into ``int``)."""
    named: dict[str, Type] = {}
    for tp in types:
        named.setdefault(format_type_bare(tp, ctx.api.options), tp)
    return UnionType.make_union(list(named.values())) if named else UninhabitedType()


def _refused(ctx: ModelContext, given: Type, declared: Type,
             expr: Expression | _Collapsed | None = None) -> bool:
    """Whether run time's checker for a field declared ``declared`` (redmodel._models.
    _types ``make_checker``) certainly refuses a value of type ``given`` (the expression
    ``expr``, when it is at hand: a display's items are judged one by one, as mypy joins
    ``[1, True]`` to ``list[int]``). As that checker: a container must be of the field's
    container class (``list``, ``tuple``, ``set``, ``frozenset``, ``dict``: a subclass
    too) and is judged item by item (keys and values of a dict, each position of a fixed
    tuple), so mypy's invariance of ``list``/``dict``/``set`` is no refusal (a
    ``list[int]`` is a ``list[float]`` field's value); a ``bool`` for an ``int``/``float``
    and a ``datetime`` for a ``date`` are refused at every depth (mypy takes each for the
    other: a subclass), and so is an object of a strict subclass of a declared attrs
    class (stored as the declared class at run time, so refused there); an ``int`` for a
    ``float`` is taken. Not judged (False): ``Any``, a
    type variable, a protocol, a TypedDict, an empty display's ``Never``; a union, unless
    every member is refused; a nested attrs object (built and checked by its own
    ``__init__``); a field declared with a PEP 646 tuple type. Anything else is judged by
    its class, as mypy judges an argument. A set-like part of a display
    (:class:`_Collapsed`) is judged as a set is: by the items certainly in it."""
    if isinstance(expr, _Collapsed):
        return _set_refused(ctx, expr.entries, declared)
    proper = get_proper_type(given)
    if isinstance(proper, LiteralType):
        proper = proper.fallback
    wanted = get_proper_type(declared)
    if isinstance(wanted, AnyType) or isinstance(
            proper, (AnyType, TypeVarLikeType, UninhabitedType, TypedDictType)) or (
            isinstance(proper, Instance) and proper.type.is_protocol) or (
            isinstance(wanted, TupleType) and _unpacked(wanted) is not None):
        return False
    if isinstance(proper, UnionType):  # an ``int | None`` id may be an int (attack 31N F4)
        return all(_refused(ctx, one, wanted) for one in proper.items)
    if isinstance(wanted, UnionType):  # ``X | None``: any other union is no field type
        rest = [one for one in map(get_proper_type, wanted.items)
                if not isinstance(one, NoneType)]
        if isinstance(proper, NoneType):
            return len(rest) == len(wanted.items)
        return len(rest) == 1 and _refused(ctx, proper, rest[0], expr)
    if isinstance(proper, NoneType):
        return not isinstance(wanted, NoneType)
    shown = _display(ctx, expr)
    unpacked = _unpacked(proper) if isinstance(proper, TupleType) else None
    if isinstance(wanted, TupleType):  # tuple[X, Y]: that many items, each of its type
        if shown is not None and _item_of(proper, "builtins.tuple") is not None:
            return _fixed_refused(ctx, shown, wanted.items)
        if unpacked is not None:  # ``tuple[A, *tuple[X, ...], B]``
            return _unpacked_refused(ctx, unpacked, wanted.items)
        if isinstance(proper, TupleType):
            return len(proper.items) != len(wanted.items) or any(
                _refused(ctx, tp, want) for tp, want in zip(proper.items, wanted.items,
                                                            strict=True))
        item = _item_of(proper, "builtins.tuple")
        if item is None:
            return isinstance(proper, Instance) or not is_subtype(proper, wanted)
        return any(_refused(ctx, item, want) for want in wanted.items)
    if not isinstance(wanted, Instance):
        return not is_subtype(proper, wanted)
    if wanted.type.fullname in CONTAINERS and wanted.args:
        fallback = proper.partial_fallback if isinstance(proper, TupleType) else proper
        if not (isinstance(fallback, Instance) and fallback.type.has_base(wanted.type.fullname)):
            return isinstance(fallback, Instance) or not is_subtype(proper, wanted)
        if wanted.type.fullname == "builtins.dict":
            if shown is not None:
                return _dict_refused(ctx, shown, wanted.args[0], wanted.args[1])
            mapped = map_instance_to_supertype(fallback, wanted.type)
            return any(_refused(ctx, tp, want) for tp, want in zip(
                mapped.args, wanted.args, strict=False))
        if shown is not None:
            if _set_like(expr):
                return _set_refused(ctx, shown, wanted.args[0])
            return any(_refused(ctx, tp, wanted.args[0], e) for e, tp in shown)
        if isinstance(proper, TupleType):
            return any(_refused(ctx, tp, wanted.args[0]) for tp in _tuple_items(proper))
        mapped = map_instance_to_supertype(fallback, wanted.type)
        return bool(mapped.args) and _refused(ctx, mapped.args[0], wanted.args[0])
    if isinstance(proper, Instance):
        return not is_subtype(proper, wanted) or (
            proper.type.fullname == "builtins.bool"
            and wanted.type.fullname in ("builtins.int", "builtins.float")) or (
            proper.type.has_base("datetime.datetime") and wanted.type.fullname == "datetime.date"
        ) or (proper.type is not wanted.type and "attrs" in wanted.type.metadata
              and proper.type.has_base(wanted.type.fullname))
    return not is_subtype(proper, wanted)


def _set_refused(ctx: ModelContext, shown: list[Entry], item: Type) -> bool:
    """A set's items (a set display's, a :class:`_Collapsed` part's) for items of type
    ``item``: a set keeps the first of equal items (``{1, True}`` is ``{1}``, ``{False, 1}``
    two items), so a refused item counts unless an earlier one the store takes may equal
    it. (Whichever of equal items is kept is the first of them: when each earlier one
    that may equal a refused item is refused too, a refused one is kept.)"""
    verdicts = [_refused(ctx, tp, item, e) for e, tp in shown]
    return any(verdicts[i] and all(verdicts[j] or _unequal(shown[i], shown[j])
                                   for j in range(i)) for i in range(len(shown)))


def _fixed_refused(ctx: ModelContext, shown: list[Entry], positions: list[Type]) -> bool:
    """A tuple display (or ``tuple(...)`` of one) for a ``tuple[X, Y]`` field. Every item
    spelled out (no ``*xs``, no set-like part: ``(1, *[2, 3])``, ``tuple([1, 2, 3])``):
    refused when its length is not the field's, or an item is not of its position's type.
    Else (``(*xs, 1, 2, 3)``, ``(*{1, 1}, 2)``): refused when the items certainly there
    (a set-like part's: :meth:`_Collapsed.certain`) are more than the positions (or fewer,
    when they are all it gives: no ``*xs``, each set-like part :meth:`_Collapsed.exact`),
    or one of them, or a ``*xs``'s item type, no position takes. (A set's order is not its
    display's: its items are not judged by position.)"""
    if not _variadic(shown):
        return len(shown) != len(positions) or any(
            _refused(ctx, tp, want, e) for (e, tp), want in zip(shown, positions, strict=True))
    certain = [one for one in shown if not isinstance(one[0], (StarExpr, _Collapsed))]
    for expr, _ in shown:
        if isinstance(expr, _Collapsed):
            certain += expr.certain()
    stars = [one for one in shown if isinstance(one[0], StarExpr)]
    exact = not stars and all(expr.exact() for expr, _ in shown if isinstance(expr, _Collapsed))
    return len(certain) > len(positions) or (exact and len(certain) < len(positions)) or any(
        all(_refused(ctx, tp, want, e) for want in positions) for e, tp in certain + stars)


def _unpacked_refused(ctx: ModelContext, unpacked: tuple[list[Type], Type, list[Type]],
                      positions: list[Type]) -> bool:
    """A PEP 646 tuple ``tuple[A, *tuple[X, ...], B]`` for a ``tuple[X, Y]`` field: of any
    length from its fixed items' count up. Refused when those are more than the positions,
    or one is not of its position's type (counted from the start before the unpacked part,
    from the end after it: when the lengths differ, the store refuses it anyway), or the
    unpacked part's item type is not of a position it must fill (when the fixed items do
    not fill every position)."""
    before, middle, after = unpacked
    if len(before) + len(after) > len(positions):
        return True
    ends = list(zip(before, positions, strict=False))
    if after:
        ends += list(zip(after, positions[-len(after):], strict=True))
    inner = positions[len(before):len(positions) - len(after)]
    return any(_refused(ctx, tp, want) for tp, want in ends) or any(
        _refused(ctx, middle, want) for want in inner)


def _set_like(expr: Expression | _Collapsed | None) -> bool:
    """A set display, or a ``set(...)``/``frozenset(...)`` call: equal items are one."""
    return isinstance(expr, SetExpr) or (isinstance(expr, CallExpr) and isinstance(
        expr.callee, RefExpr) and expr.callee.fullname in ("builtins.set", "builtins.frozenset"))


def _dict_refused(ctx: ModelContext, shown: list[Entry], key: Type,
                  value: Type) -> bool:
    """A dict display's keys and values (in turn) for a ``dict[key, value]`` field: equal
    keys are one (``{1: 1.0, True: 2.0}`` has the key 1 and the value 2.0), so a refused
    key is certain only when every key is refused, and a refused value only when every
    value is or the keys are distinct string literals."""
    keys, values = shown[0::2], shown[1::2]
    bad_keys = [_refused(ctx, tp, key, e) for e, tp in keys]
    bad_values = [_refused(ctx, tp, value, e) for e, tp in values]
    # a key stays unless an earlier key equals it; its value unless a later key does
    return any(bad_keys[i] and all(bad_keys[j] or _unequal(keys[i], keys[j]) for j in range(i))
               for i in range(len(keys))) or any(
        bad_values[i] and all(bad_values[j] or _unequal(keys[i], keys[j])
                              for j in range(i + 1, len(keys))) for i in range(len(keys)))


#: Classes whose values never equal another family's (``1 == True == 1.0``; a ``date``
#: never equals a ``datetime``).
FAMILIES = {"builtins.bool": "number", "builtins.int": "number", "builtins.float": "number",
            "builtins.str": "str", "builtins.bytes": "bytes", "datetime.date": "date",
            "datetime.datetime": "datetime", "builtins.tuple": "tuple",
            "builtins.frozenset": "frozenset"}


def _unequal(one: Entry, other: Entry) -> bool:
    """Whether two display items certainly differ (``==``): values of two literals that
    differ, or of two classes of different families (:data:`FAMILIES`, ``None``)."""
    constants = _constant(one[0]), _constant(other[0])
    if constants[0] is not _UNKNOWN and constants[1] is not _UNKNOWN:
        return bool(constants[0] != constants[1])
    families = [_family(tp) for _, tp in (one, other)]
    return None not in families and families[0] != families[1]


def _equal(one: Entry, other: Entry) -> bool:
    """Whether two display items are certainly equal: two literals of equal values."""
    constants = _constant(one[0]), _constant(other[0])
    return constants[0] is not _UNKNOWN and constants[1] is not _UNKNOWN and bool(
        constants[0] == constants[1])


_UNKNOWN = object()


def _constant(expr: Expression | _Collapsed) -> object:
    """The value of a literal (a number, text, ``True``/``False``/``None``, a tuple of
    them), else ``_UNKNOWN``."""
    if isinstance(expr, (IntExpr, FloatExpr, StrExpr)):
        return expr.value
    if isinstance(expr, NameExpr) and expr.fullname in ("builtins.True", "builtins.False",
                                                        "builtins.None"):
        return {"builtins.True": True, "builtins.False": False}.get(expr.fullname)
    if isinstance(expr, TupleExpr):
        items = [_constant(item) for item in expr.items]
        return _UNKNOWN if any(item is _UNKNOWN for item in items) else tuple(items)
    if not (isinstance(expr, CallExpr) and isinstance(expr.callee, RefExpr)
            and all(kind == ARG_POS for kind in expr.arg_kinds)):
        return _UNKNOWN
    if expr.callee.fullname == "builtins.frozenset" and len(expr.args) <= 1:
        shown = expr.args[0] if expr.args else TupleExpr([])
        items = [_constant(item) for item in shown.items] \
            if isinstance(shown, (ListExpr, TupleExpr, SetExpr)) else [_UNKNOWN]
        return _UNKNOWN if any(item is _UNKNOWN for item in items) else frozenset(items)
    numbers = [arg.value for arg in expr.args if isinstance(arg, IntExpr)]
    if expr.callee.fullname in ("datetime.date", "datetime.datetime") and len(
            numbers) == len(expr.args):
        try:
            return (dt.date if expr.callee.fullname == "datetime.date" else dt.datetime)(
                *numbers)
        except (TypeError, ValueError, OverflowError):
            return _UNKNOWN
    return _UNKNOWN


def _family(tp: Type) -> str | None:
    proper = get_proper_type(tp)
    if isinstance(proper, LiteralType):
        proper = proper.fallback
    if isinstance(proper, TupleType):
        proper = proper.partial_fallback
    if isinstance(proper, NoneType):
        return "none"
    return FAMILIES.get(proper.type.fullname) if isinstance(proper, Instance) else None


def _item_of(tp: ProperType, container: str) -> Type | None:
    """What ``tp`` holds when it is an instance of ``container`` (``tuple[int, ...]``: int)."""
    fallback = tp.partial_fallback if isinstance(tp, TupleType) else tp
    if not (isinstance(fallback, Instance) and fallback.type.has_base(container)):
        return None
    if isinstance(tp, TupleType):
        items = _tuple_items(tp)
        return make_simplified_union(items) if items else UninhabitedType()
    for base in fallback.type.mro:
        if base.fullname == container:
            mapped = map_instance_to_supertype(fallback, base)
            return mapped.args[0] if mapped.args else None
    return None


def _tuple_items(tp: TupleType) -> list[Type]:
    """The types of a tuple type's items; a PEP 646 unpacked part (``*tuple[int, ...]``) as
    its item type (``Any`` for a ``*Ts``)."""
    unpacked = _unpacked(tp)
    if unpacked is None:
        return list(tp.items)
    before, middle, after = unpacked
    return [*before, middle, *after]


class _Collapsed:
    """The items of a set-like display (a set display, ``set(...)``/``frozenset(...)`` of a
    display, a dict display's keys) spread into a list or tuple or given to ``list(...)``/
    ``tuple(...)`` (``[*{1, True}]``, ``list({"a": 1})``): equal items are one (``{1, True}``
    is ``{1}``: iterating it gives ``1`` only), and a set's order is not the display's, so
    which items the list gets, and where, is known only as far as :meth:`certain` says.
    Judged as a set is (:func:`_set_refused`): an item counts only when no earlier item the
    store takes may equal it (attack 33B F1/F2/F7)."""

    def __init__(self, entries: list[Entry]) -> None:
        self.entries = entries

    def certain(self) -> list[Entry]:
        """The items certainly given: spelled out (no ``*xs``) and certainly unequal to
        every earlier item."""
        return [one for i, one in enumerate(self.entries)
                if not isinstance(one[0], (StarExpr, _Collapsed))
                and all(_unequal(one, other) for other in self.entries[:i])]

    def exact(self) -> bool:
        """Whether :meth:`certain` is all it gives: every other item is certainly one an
        earlier item equals (two equal literals: ``{1, True, 1.0}`` gives one item)."""
        return all(not isinstance(one[0], (StarExpr, _Collapsed)) and (
            all(_unequal(one, other) for other in self.entries[:i])
            or any(_equal(one, other) for other in self.entries[:i]))
            for i, one in enumerate(self.entries))


#: A display's item (:func:`_display`): its expression (a ``StarExpr`` for a ``*xs`` of
#: unknown length, a :class:`_Collapsed` for a set-like part) and its type.
Entry = tuple["Expression | _Collapsed", Type]


def _display(ctx: ModelContext, expr: Expression | _Collapsed | None) -> list[Entry] | None:
    """The items of a list, tuple or set display (also given to ``frozenset(...)``,
    ``set(...)``, ``list(...)``, ``tuple(...)``), or a dict display's keys and values in
    turn, with their types: each is certainly in the value. None for any other expression.
    A starred part (``*xs``, ``**d``) is spelled out when it is itself a display or a fixed
    tuple (``*[1, True]``, ``*(1, "a")``: its items); any other stands for what it may give,
    as one item of its iterable's item type (``**d``: one key and one value of the mapping's
    types) with the :class:`StarExpr` (``**``: a ``StarExpr`` of the mapping, then a
    ``TempNode``) as its expression, of type ``Any`` when that cannot be seen. What
    iterating a dict display gives is its keys; a set-like part of a list or tuple (a set
    display, a dict's keys) is one :class:`_Collapsed` entry (its equal items are one); in
    a set, its items are the set's own (:func:`_flat`)."""
    if _container_call(expr):
        assert isinstance(expr, CallExpr)
        given = expr.args[0]
        inner = _display(ctx, given)
        if inner is None:
            return None
        if isinstance(given, DictExpr):
            inner = inner[0::2]  # iterating a dict gives its keys
        if _set_like(expr):
            return _flat(inner)
        return [_collapse(inner)] if _set_like(given) or isinstance(given, DictExpr) else inner
    if isinstance(expr, (ListExpr, TupleExpr, SetExpr)):
        items: list[Entry] = []
        for item in expr.items:
            if isinstance(item, StarExpr):
                items.extend(_starred(ctx, item))
            else:
                items.append((item, _expression_type(ctx, item)))
        return _flat(items) if isinstance(expr, SetExpr) else items
    if isinstance(expr, DictExpr):
        pairs: list[Entry] = []
        for key, value in expr.items:
            if key is not None:
                pairs += [(key, _expression_type(ctx, key)), (value, _expression_type(ctx, value))]
                continue
            inner = _display(ctx, value) if isinstance(value, DictExpr) else None
            if inner is not None:  # ``**{"a": 1}``: its keys and values
                pairs += inner
                continue
            mapping = get_proper_type(_expression_type(ctx, value))
            types: list[Type] = [AnyType(TypeOfAny.special_form)] * 2
            base = next((one for one in mapping.type.mro if one.fullname == "typing.Mapping"),
                        None) if isinstance(mapping, Instance) else None
            if isinstance(mapping, Instance) and base is not None:
                types = list(map_instance_to_supertype(mapping, base).args)
            pairs += [(StarExpr(value), types[0]), (TempNode(types[1]), types[1])]
        return pairs
    return None


def _container_call(expr: Expression | _Collapsed | None) -> bool:
    """``list(x)``, ``set(x)``, ``frozenset(x)``, ``tuple(x)`` of one positional argument."""
    return isinstance(expr, CallExpr) and isinstance(expr.callee, RefExpr) and \
        expr.callee.fullname in CONTAINERS[:4] and len(expr.args) == 1 and \
        expr.arg_kinds == [ARG_POS]


def _collapse(entries: list[Entry]) -> Entry:
    """A set-like display's items as one entry of a list or tuple (:class:`_Collapsed`)."""
    types = [tp for _, tp in entries]
    return _Collapsed(entries), make_simplified_union(types) if types else UninhabitedType()


def _flat(entries: list[Entry]) -> list[Entry]:
    """``entries`` with each :class:`_Collapsed` one's items in its place (in a set, a set
    part's items are the outer set's: equal ones are one there too)."""
    flat: list[Entry] = []
    for expr, tp in entries:
        flat.extend(_flat(expr.entries) if isinstance(expr, _Collapsed) else [(expr, tp)])
    return flat


def _starred(ctx: ModelContext, star: StarExpr) -> list[Entry]:
    """What ``*xs`` gives a display (:func:`_display`): a display's or a fixed tuple's items
    one by one (a set display's, a dict display's keys: one :class:`_Collapsed` entry),
    else one ``(star, item type)`` standing for any number of items."""
    inner = _display(ctx, star.expr) if isinstance(
        star.expr, (ListExpr, TupleExpr, SetExpr, CallExpr, DictExpr)) else None
    if inner is not None:
        if isinstance(star.expr, DictExpr):
            return [_collapse(inner[0::2])]  # ``*{"a": 1}``: its keys
        return [_collapse(inner)] if _set_like(star.expr) else inner
    given = get_proper_type(_expression_type(ctx, star.expr))
    if isinstance(given, TupleType) and _unpacked(given) is None:
        return [(TempNode(item), item) for item in given.items]
    members = given.items if isinstance(given, UnionType) else [given]
    found = [_item_of(one, "typing.Iterable") for one in map(get_proper_type, members)]
    item: Type = AnyType(TypeOfAny.special_form) if any(one is None for one in found) or not (
        found) else make_simplified_union([one for one in found if one is not None])
    return [(star, item)]


def _unpacked(tp: TupleType) -> tuple[list[Type], Type, list[Type]] | None:
    """A PEP 646 tuple type ``tuple[A, *tuple[X, ...], B]``: the items before the unpacked
    part, its item type (``Any`` for a ``*Ts``), the items after; None for a fixed tuple."""
    for i, item in enumerate(tp.items):
        proper = get_proper_type(item)
        if isinstance(proper, UnpackType):
            inner = get_proper_type(proper.type)
            middle = _item_of(inner, "builtins.tuple") if isinstance(
                inner, (Instance, TupleType)) else None
            return (tp.items[:i], AnyType(TypeOfAny.special_form) if middle is None else middle,
                    tp.items[i + 1:])
    return None


def _variadic(shown: list[Entry]) -> bool:
    """Whether a display (:func:`_display`) has a part of unknown length or order (``*xs``,
    a set-like part)."""
    return any(isinstance(expr, (StarExpr, _Collapsed)) for expr, _ in shown)


def _expression_type(ctx: ModelContext, expr: Expression) -> Type:
    """The type the checker gave ``expr`` (its type map), else inferred now."""
    lookup = getattr(ctx.api, "lookup_type_or_none", None)
    found = lookup(expr) if lookup is not None else None
    return found if found is not None else ctx.api.get_expression_type(expr)


def _is_bool(tp: Type) -> bool:
    proper = get_proper_type(tp)
    if isinstance(proper, LiteralType):
        proper = proper.fallback
    if isinstance(proper, UnionType):
        return any(_is_bool(t) for t in proper.items)
    return isinstance(proper, Instance) and proper.type.fullname == "builtins.bool"


def _check_update(ctx: ModelContext, info: TypeInfo, key: tuple[str, Type] | None,
                  position: int) -> None:
    """``update(Model, id, **values)``: each keyword a stored field other than the key,
    with a value of its type (``None`` removes a field: only an Optional one takes it, as
    the type says); at least one value."""
    names = ctx.arg_names[position] if position < len(ctx.arg_names) else []
    types = ctx.arg_types[position] if position < len(ctx.arg_types) else []
    exprs = ctx.args[position] if position < len(ctx.args) else []
    if not types:
        ctx.api.fail(f'update of "{info.name}" with nothing to update: pass field=value',
                     ctx.context, code=REDMODEL)
        return
    for name, given, expr in zip(names, types, exprs, strict=False):
        if name is None:  # **mapping: the keys are not known here
            continue
        if key is not None and name == key[0]:
            ctx.api.fail(f'"{info.name}.{name}" is the id: it cannot be updated', ctx.context,
                         code=REDMODEL)
            continue
        var = _stored(info, name)
        if var is None:
            ctx.api.fail(f'"{info.name}" has no field "{name}" to update', ctx.context,
                         code=REDMODEL)
        elif isinstance(var, Var) and var.type is not None:
            _check_value(ctx, info, (name, var.type), given, "value", expr)


def _incr_fields(ctx: ModelContext, info: TypeInfo, key: tuple[str, Type] | None,
                 params: dict[str, int]) -> None:
    """The literal keys of ``changes``, ``floor`` and ``ceiling`` name numeric fields; an
    int field's change is no float (a bound may be: it is rounded inwards), no change or
    bound a bool. A dict display's later key wins (``{"n": 0.5, **over}``, ``{"n": 1.5,
    "n": 1}``), so an amount is judged only when no later key (a ``**d`` part's too) may
    equal its key; a ``**{...}`` display's keys and amounts are judged as the display's
    own (:func:`_display`). An unknown or non-numeric field is refused whatever follows
    (a later key cannot take it away)."""
    for what in ("changes", "floor", "ceiling"):
        position = params.get(what)
        if position is None or position >= len(ctx.args) or not ctx.args[position]:
            continue
        given = ctx.args[position][0]
        shown = _display(ctx, given) if isinstance(given, DictExpr) else None
        if shown is None:
            continue
        keys, values = shown[0::2], shown[1::2]
        for i, ((name, _), (_, amount)) in enumerate(zip(keys, values, strict=True)):
            if not isinstance(name, StrExpr):
                continue
            numeric = _numeric_field(ctx, info, name.value, key)
            if numeric is None or not all(_unequal(keys[i], later) for later in keys[i + 1:]):
                continue
            if what == "changes":
                _check_amount(ctx, info, name.value, numeric, amount)
            elif _is_bool(amount) and not isinstance(get_proper_type(amount), UnionType):
                ctx.api.fail(f'a {what} of "{info.name}.{name.value}" is a number, not '
                             '"bool"', ctx.context, code=REDMODEL)


def _check_amount(ctx: ModelContext, info: TypeInfo, path: str, numeric: str,
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


def _model_info(tp: Type) -> tuple[TypeInfo | None, bool]:
    """The class given as a model, and whether it is that very class (a class object, or
    a ``type[C]`` of a ``@final`` C) rather than maybe a subclass (``type[C]``)."""
    proper = get_proper_type(tp)
    if isinstance(proper, CallableType) and proper.is_type_obj():
        return proper.type_object(), True
    if isinstance(proper, TypeType) and isinstance(proper.item, Instance):
        return proper.item.type, proper.item.type.is_final
    return None, False


def _literal(expr: Expression, tp: Type) -> str | None:
    if isinstance(expr, StrExpr):
        return expr.value
    proper = get_proper_type(tp)
    if isinstance(proper, Instance) and proper.last_known_value is not None:
        proper = proper.last_known_value
    if isinstance(proper, LiteralType) and isinstance(proper.value, str):
        return proper.value
    return None


def _numeric_field(ctx: ModelContext, info: TypeInfo, path: str,
                   key: tuple[str, Type] | None) -> str | None:
    """``builtins.int``/``builtins.float`` for the field at ``path`` when increment_kind
    (redmodel._models._specs) accepts it; reports an error and returns None when it does
    not (rules 1 to 3), None without an error when the field's type is unknown (Any)."""
    field_type = _field_type(ctx, info, path, key, "increment")
    if field_type is None:
        return None
    proper = _without_none(get_proper_type(field_type))
    if isinstance(proper, AnyType):
        return None
    if isinstance(proper, Instance) and proper.type.fullname in (
        "builtins.int", "builtins.float"
    ):
        return proper.type.fullname
    ctx.api.fail(f'incr needs an int or float field; "{info.name}.{path}" is not one',
                 ctx.context, code=REDMODEL)
    return None


def _field_type(ctx: ModelContext, info: TypeInfo, path: str, key: tuple[str, Type] | None,
                what: str) -> Type | None:
    """The declared type of the stored field at ``path`` (dotted into nested attrs
    classes) for an ``increment`` (no codec, not below an Optional nested object) or a
    ``read`` (``get_field``: a leaf, not a nested object, which is read whole); reports
    an error and returns None for a path run time refuses; None without an error when a
    type on the way is unknown."""
    owner: TypeInfo | None = info
    parts = path.split(".")
    for depth, part in enumerate(parts):
        var = _stored(owner, part) if owner is not None else None
        if var is True:  # fields not known: not judged
            return None
        var = var if isinstance(var, Var) else None
        declared = _declared_of(var.info) if var is not None else None
        if (var is None or var.type is None or declared is None
                or (depth == 0 and key is not None and part == key[0])):
            verb = "to increment" if what == "increment" else "to read"
            ctx.api.fail(f'"{info.name}" has no field "{path}" {verb}', ctx.context,
                         code=REDMODEL)
            return None
        if part in declared["codec"] and what == "increment":
            ctx.api.fail(f'incr needs an int or float field; "{info.name}.{path}" is not one '
                         "(it has a codec)", ctx.context, code=REDMODEL)
            return None
        whole = get_proper_type(var.type)
        field_type = _without_none(whole)
        if isinstance(field_type, AnyType):
            return None
        if depth < len(parts) - 1 and isinstance(field_type, Instance) \
                and "attrs" not in field_type.type.metadata \
                and "dataclass" in field_type.type.metadata and part not in declared["codec"]:
            return None  # attrs at run time or not (a dataclass_transform class): not judged
        nested = isinstance(field_type, Instance) and "attrs" in field_type.type.metadata \
            and part not in declared["codec"]
        if nested and field_type is not whole and what == "read":
            # an Optional nested object is stored whole, one value (as for incr below):
            # get_field reads it as a leaf, and no path below it is a stored field
            if depth == len(parts) - 1:
                return var.type
            ctx.api.fail(f'"{info.name}" has no field "{path}" to read ("'
                         f'{".".join(parts[:depth + 1])}" is Optional: stored whole, read it '
                         "whole)", ctx.context, code=REDMODEL)
            return None
        if depth == len(parts) - 1:
            if nested and what == "read":
                ctx.api.fail(f'get_field reads one stored value; "{info.name}.{path}" is a '
                             "nested object, read whole with get()", ctx.context,
                             code=REDMODEL)
                return None
            return var.type
        if nested and field_type is not whole and what == "increment":
            ctx.api.fail(f'incr needs an int or float field; "{info.name}.{path}" is not '
                         f'one ("{".".join(parts[:depth + 1])}" is Optional: stored whole)',
                         ctx.context, code=REDMODEL)
            return None
        owner = field_type.type if nested and isinstance(field_type, Instance) else None
    return None


def _without_none(tp: ProperType) -> ProperType:
    """``int`` for ``int | None``: incr adds to the stored number."""
    if isinstance(tp, UnionType):
        rest = [t for t in map(get_proper_type, tp.items) if not isinstance(t, NoneType)]
        if len(rest) == 1:
            return rest[0]
    return tp

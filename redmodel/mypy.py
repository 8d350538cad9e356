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

How: mypy's attrs plugin recognises field specifiers by name, from sets it exports for
this purpose (mypy's documentation, "Extending mypy"), and reads ``default=``,
``factory=`` and ``kw_only=`` from each call. ``key_field`` implies them instead, so before
attrs looks at a ``@redmodel.model`` class, each ``key_field(...)`` call gets the argument
it implies (``factory`` when generated, ``kw_only=True`` when not) unless it passes one.
"""

from __future__ import annotations

from collections.abc import Callable

from mypy.errorcodes import ErrorCode
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
from mypy.plugins.attrs import attr_attrib_makers
from mypy.semanal_shared import parse_bool
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
#: What takes a transaction function: a generator function there is refused at run time.
TRANSACTION_DECORATORS = (
    "redmodel.transactions._run.TransactionDecorator.__call__",
    "redmodel._stores._sync.Store.transaction",
    "redmodel._stores._async.AsyncStore.transaction",
)

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
        return _desugar_key_fields if fullname == MODEL else None

    def get_method_hook(self, fullname: str) -> Callable[[MethodContext], Type] | None:
        if fullname in TRANSACTION_DECORATORS:
            return _refuse_generator
        if fullname in INCR_FIELDS:
            return _incr_fields
        return _incr_type if fullname in INCR else None

    def get_function_hook(self, fullname: str) -> Callable[[FunctionContext], Type] | None:
        return _refuse_generator if fullname == "redmodel.transactions._run.transaction" \
            else None


def plugin(version: str) -> type[Plugin]:
    """mypy's entry point."""
    return RedmodelPlugin


# -- key_field ---------------------------------------------------------------------------------


def _desugar_key_fields(ctx: ClassDefContext) -> None:
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


def _refuse_generator(ctx: MethodContext | FunctionContext) -> Type:
    """A generator function given to a transaction decorator is an error (at run time:
    TransactionError "is a generator function"): its body would never run. Known from the
    decorated ``def`` (or a name bound to one), else from a ``Generator`` return type."""
    func: FuncItem | None = None
    if isinstance(ctx.context, Decorator):
        func = ctx.context.func
    elif ctx.args and ctx.args[0] and isinstance(ctx.args[0][0], RefExpr):
        node = ctx.args[0][0].node
        func = node.func if isinstance(node, Decorator) else \
            node if isinstance(node, FuncItem) else None
    generator = func is not None and (func.is_generator or func.is_async_generator)
    if not generator and ctx.arg_types and ctx.arg_types[0]:
        proper = get_proper_type(ctx.arg_types[0][0])
        if isinstance(proper, CallableType):
            ret = get_proper_type(proper.ret_type)
            generator = isinstance(ret, Instance) and ret.type.fullname in (
                "typing.Generator", "typing.AsyncGenerator")
    if generator:
        name = f"{func.name} " if func is not None else ""
        ctx.api.fail(f"transaction function {name}is a generator function: a transaction "
                     "runs it to its return and then commits, so its body would never run; "
                     "return a value instead of yielding", ctx.context, code=REDMODEL)
    return ctx.default_return_type


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

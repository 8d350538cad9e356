"""Generated per-model code: each model's validator, and its hash-layout encoder and
decoder, written once per model as Python source and compiled (``compile``/``exec``),
the way attrs writes ``__init__`` and cattrs its ``structure`` functions.

A generated function is straight-line code over the model's fields: attribute reads,
the stored field names as constants, each leaf's encoder/decoder/checker bound as a
global of the function (or inlined for the common scalars), no loop over field specs,
no reflection, no per-call dict of converters.

They are fast paths with the generic code as their referee, so errors stay exactly
what they were:

- :func:`checker` answers quietly for a valid object; for an invalid one it calls
  :meth:`ModelSpec.check`'s generic walk (``reference``), which raises the one
  ValidationError (naming model and field) it always raised.
- :func:`hash_decoder` builds the object when every stored value decodes and every
  field without a default is present; on any exception it returns :data:`FALLBACK`
  and the hash layout runs its generic decode, which raises the exact DecodeError (or
  upgrades an old value, fills a default). Models with renamed fields (``old_names=``)
  always take the generic decode.
- :func:`hash_encoder` gives exactly the generic ``(field, value, ...)`` and
  ``fields to HDEL`` lists (tests/test_compiled.py proves it against stored bytes).

Values never appear in the generated source (only field names), so an encrypted
field's value cannot leak into a traceback's source line.
"""

from __future__ import annotations

import itertools
import linecache
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from redmodel._args import INT_TEXT_ALWAYS
from redmodel._models._keys import _TABLES, escape
from redmodel._models._types import _NON_FINITE, _SCALARS, ID_STR

if TYPE_CHECKING:
    from redmodel._models._specs import FieldSpec, ModelSpec

__all__ = ["FALLBACK", "checker", "field_encoder", "hash_decoder", "hash_encoder", "hash_packer",
           "key_text"]

FALLBACK: Any = object()
"""What a generated decoder answers when the generic decode must decide."""

_counter = itertools.count()

# Encoders of _types._SCALARS written inline (the expression of the same lambda).
_INLINE_ENCODE = {
    str: "{v}.encode('utf-8')",
    int: "str(int({v})).encode()",
    float: "repr(float({v})).encode()",
    bool: "(b'1' if {v} else b'0')",
}
# A predicate that, when true, guarantees the scalar's checker answers None.
_FAST_CHECK = {
    str: "(type({v}) is str and {v}.isascii())",
    int: "(type({v}) is int and -INTS < {v} < INTS)",  # INTS: every _Env's global
    float: "type({v}) is float",
    bool: "type({v}) is bool",
    bytes: "type({v}) is bytes",
}


def _checked_scalar(f: FieldSpec) -> type | None:
    for tp, (_enc, _dec, chk) in _SCALARS.items():
        if f.check is chk:
            return tp
    return None


def build(name: str, source: str, env: dict[str, Any]) -> Callable[..., Any]:
    """Compile ``source`` (our own, built from field names only) and return its function
    ``name``; the source goes into linecache, so a traceback shows the generated line."""
    filename = f"<redmodel generated {name} #{next(_counter)}>"
    code = compile(source, filename, "exec")
    # the source in linecache: a traceback through generated code shows its line
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(code, env)  # our own source, built from field names only
    fn: Callable[..., Any] = env[name]
    fn.__redmodel_source__ = source  # type: ignore[attr-defined]
    return fn


class _Env:
    """The globals of one generated function: each bound object gets a short name."""

    def __init__(self) -> None:
        # INTS: every int below it in magnitude has decimal text at any digit limit of
        # the interpreter (a larger one is left to the checker: _args.int_too_long)
        self.env: dict[str, Any] = {"INTS": INT_TEXT_ALWAYS}
        self._names: dict[int, str] = {}

    def bind(self, obj: Any, stem: str) -> str:
        found = self._names.get(id(obj))
        if found is not None:
            return found
        name = f"{stem}{len(self.env)}"
        self.env[name] = obj
        self._names[id(obj)] = name
        return name

    def const(self, value: bytes) -> str:
        return repr(value)


# ---- validator ----------------------------------------------------------------------


def checker(spec: ModelSpec, reference: Callable[[Any], None]) -> Callable[[Any], None]:
    """``check(obj)``: None for a valid object; else ``reference(obj)`` (which raises)."""
    env = _Env()
    cls = env.bind(spec.cls, "cls")
    ref = env.bind(reference, "ref")
    lines = ["def check(obj):",
             f"    if not isinstance(obj, {cls}):",
             f"        return {ref}(obj)"]
    for f in spec.fields:
        v = f"obj.{f.name}"
        tp = _checked_scalar(f)
        chk = env.bind(f.check, "c")
        if tp is not None and tp in _FAST_CHECK:
            lines.append(f"    v = {v}")
            fast = _FAST_CHECK[tp].format(v="v")
            lines.append(f"    if not {fast} and {chk}(v) is not None:")
        else:
            lines.append(f"    if {chk}({v}) is not None:")
        lines.append(f"        return {ref}(obj)")
    lines.append("    return None")
    return build("check", "\n".join(lines) + "\n", env.env)


# ---- hash encoder -------------------------------------------------------------------


def _leaves(fields: tuple[FieldSpec, ...], prefix: bytes, delim: bytes, where: str
            ) -> list[tuple[FieldSpec, bytes, str]]:
    """(leaf spec, stored hash field name, Python expression of its value) in the
    generic encoder's order (depth first, declaration order)."""
    out: list[tuple[FieldSpec, bytes, str]] = []
    for f in fields:
        name = prefix + f.stored.encode()
        if f.kind == "struct":
            out.extend(_leaves(f.children, name + delim, delim, f"{where}.{f.name}"))
        else:
            out.append((f, name, f"{where}.{f.name}"))
    return out


def _encode_expr(env: _Env, f: FieldSpec, v: str) -> str:
    for tp, text in _INLINE_ENCODE.items():
        if f.encode is _SCALARS[tp][0]:
            return text.format(v=v)
    assert f.encode is not None
    return f"{env.bind(f.encode, 'e')}({v})"


def _encoder_lines(env: _Env, leaves: list[tuple[FieldSpec, bytes, str]],
                   generic: str | None) -> list[str]:
    """Body lines filling ``out`` (pairs) and ``nones``, in the generic walk's order.

    Every leaf is read once into a local (a nested object's path walked once). The leaves
    that are not Optional go into list literals, no tuple per field: one of them holding
    None (an object that was not validated) goes to ``generic`` instead, which puts it
    among ``nones`` as the generic walk does (without ``generic``: tested one by one). An
    Optional leaf is tested in place."""
    lines: list[str] = []
    structs: dict[str, str] = {}

    def local(expr: str) -> str:
        head, _, attr = expr.rpartition(".")
        if head in ("obj", "value", ""):
            return expr
        if head not in structs:
            parent = local(head)
            name = f"s{len(structs)}"
            lines.append(f"    {name} = {parent}")
            structs[head] = name
        return f"{structs[head]}.{attr}"

    for i, (_f, _name, expr) in enumerate(leaves):
        lines.append(f"    v{i} = {local(expr)}")
    required = [i for i, (f, _, _) in enumerate(leaves) if not f.optional]
    if generic is not None and required:
        test = " or ".join(f"v{i} is None" for i in required)
        lines.append(f"    if {test}:")
        lines.append(f"        return {generic}(obj)")
    lines.append("    nones = []")
    group: list[str] = []
    started = False

    def flush() -> None:
        nonlocal started
        if group or not started:
            op = "+=" if started else "="
            lines.append(f"    out {op} [{', '.join(group)}]")
            started = True
            group.clear()

    for i, (f, name, _) in enumerate(leaves):
        encoded = _encode_expr(env, f, f"v{i}")
        if generic is not None and not f.optional:
            group += [repr(name), encoded]
            continue
        flush()
        lines.append(f"    if v{i} is None:")
        lines.append(f"        nones.append({name!r})")
        lines.append("    else:")
        lines.append(f"        out += ({name!r}, {encoded})")
    flush()
    return lines


def hash_encoder(spec: ModelSpec, generic: Callable[[Any], tuple[list[bytes], list[bytes]]]
                 ) -> Callable[[Any], tuple[list[bytes], list[bytes]]]:
    """``encode(obj) -> (field, value, field, value, ..., fields that are None)``: the
    HSET arguments and the fields to HDEL, exactly as the generic walk gives them
    (``generic``: that walk, for an object holding None where its model allows none)."""
    env = _Env()
    delim = spec.delimiter.encode()
    leaves = _leaves(spec.fields, b"", delim, "obj")
    lines = ["def encode(obj):"]
    lines += _encoder_lines(env, leaves, env.bind(generic, "g"))
    lines.append("    return out, nones")
    return build("encode", "\n".join(lines) + "\n", env.env)


def _resp_arg(arg: bytes) -> bytes:
    """One argument of a command in RESP (a bulk string)."""
    return b"$%d\r\n%b\r\n" % (len(arg), arg)


def hash_packer(spec: ModelSpec) -> Callable[[Any], tuple[str, tuple[Any, ...], bytes] | None
                                             ] | None:
    """``packed(obj) -> (key, command, RESP)``: for an object of the model (its class
    exactly: the caller's test) that passes :func:`checker`'s test, whose id has the plain
    key :func:`key_text` builds inline and whose leaves are all set, its whole save as
    ``HSET key field value ...``: the key, the command exactly as ``HashLayout.save``
    gives it (``hash_encoder``'s pairs) and that command as the bytes a UTF-8 client packs
    it into (what ``hiredis.pack_command`` gives), built in one pass over the fields.
    None for any other object (the caller takes the general path, which checks it again
    and raises the ValidationError). None (no function) for a model whose key is never
    built inline. The caller decides when a whole save is that HSET alone (no TTL, no
    stale fields, a model that cannot be empty)."""
    found = _key_fast(spec)
    if found is None:
        return None
    fast_id, text = found
    env = _Env()
    prefix = f"{spec.prefix}{spec.delimiter}"
    table = env.bind(_key_table(spec.delimiter), "t")
    lines = ["def packed(obj):",
             f"    v = obj.{spec.key.name}",
             f"    if not ({fast_id}):",
             "        return None",
             f"    t = {text}",
             f"    k = {prefix!r} + {_escaped(spec, 't', table)}"]
    tops: dict[str, str] = {}  # each field read once, into a local
    for f in spec.fields:  # the checker's test, None where it would call its reference
        tp = _checked_scalar(f)
        chk = env.bind(f.check, "c")
        a = tops[f.name] = f"a{len(tops)}"
        lines.append(f"    {a} = obj.{f.name}")
        if tp is not None and tp in _FAST_CHECK:
            lines.append(f"    if not {_FAST_CHECK[tp].format(v=a)} and {chk}({a}) is not None:")
        else:
            lines.append(f"    if {chk}({a}) is not None:")
        lines.append("        return None")
    leaves = _leaves(spec.fields, b"", spec.delimiter.encode(), "obj")
    structs: dict[str, str] = {}
    # its locals (a<n> fields, s<n> nested objects, v<n> leaves, w<n> their bytes, t, k,
    # kb) are never the name of a bound global (_Env: c<n>, e<n>, f<n>, t<n>)

    def local(expr: str) -> str:  # a nested object's path walked once
        head, _, attr = expr.rpartition(".")
        if head == "obj":
            return tops[attr]
        if head not in structs:
            parent = local(head)
            structs[head] = f"s{len(structs)}"
            lines.append(f"    {structs[head]} = {parent}")
        return f"{structs[head]}.{attr}"

    head = b"*%d\r\n" % (2 + 2 * len(leaves)) + _resp_arg(b"HSET") + b"$%d\r\n%b\r\n"
    fmt = [head]
    args = ["len(kb), kb"]
    command = ['"HSET"', "k"]
    for i, (f, name, expr) in enumerate(leaves):
        v = local(expr)
        if "." in v:
            lines.append(f"    v{i} = {v}")
            v = f"v{i}"
        if f.optional:
            lines.append(f"    if {v} is None:")
            lines.append("        return None")
        lines.append(f"    w{i} = {_encode_expr(env, f, v)}")
        if not any(f.encode is _SCALARS[tp][0] for tp in _INLINE_ENCODE):
            lines.append(f"    if w{i}.__class__ is not bytes:")
            lines.append("        return None")
        fmt.append(_resp_arg(name).replace(b"%", b"%%") + b"$%d\r\n%b\r\n")
        args.append(f"len(w{i}), w{i}")
        command += [repr(name), f"w{i}"]
    lines.append("    kb = k.encode()")
    lines.append(f"    return k, ({', '.join(command)}), "
                 f"{env.bind(b''.join(fmt), 'f')} % ({', '.join(args)})")
    if any(f.kind == "encoded" for f, _, _ in leaves):
        # a codec may refuse a valid value: the general path raises its error (naming
        # the key and the field: HashLayout.precheck)
        lines = [lines[0], "    try:", *("    " + line for line in lines[1:]),
                 "    except Exception:", "        return None"]
    return build("packed", "\n".join(lines) + "\n", env.env)


def field_encoder(spec: ModelSpec, f: FieldSpec
                  ) -> Callable[[Any, list[bytes], list[bytes]], None]:
    """``encode(value, out, nones)`` of one top-level field (update of some fields)."""
    env = _Env()
    delim = spec.delimiter.encode()
    top = f"obj.{f.name}"
    leaves = [(leaf, name, "value" + expr[len(top):])
              for leaf, name, expr in _leaves((f,), b"", delim, "obj")]
    body = _encoder_lines(env, leaves, None)
    body = [line for line in body if line not in ("    nones = []", "    out = []")]
    body = [line.replace("    out = [", "    out += [", 1) for line in body]
    lines = ["def encode(value, out, nones):", *body]
    return build("encode", "\n".join(lines) + "\n", env.env)


# ---- hash decoder -------------------------------------------------------------------


# Decoders of _types._SCALARS written inline: the same call without its wrapper, which
# only turns the error into BadValueError (here any error hands the reply to the generic
# decode, which raises the DecodeError naming the field).
_INLINE_DECODE = {str: "{r}.decode('utf-8')"}  # int and float: their strict decoders


def _decode_expr(env: _Env, f: FieldSpec, raw: str) -> str:
    assert f.decode is not None
    for tp, text in _INLINE_DECODE.items():
        if f.decode is _SCALARS[tp][1]:
            return text.format(r=raw)
    return f"{env.bind(f.decode, 'd')}({raw})"


def _inline_number(env: _Env, f: FieldSpec, name: bytes, lines: list[str]) -> str | None:
    """For a required int or float leaf with the strict scalar decoder: statements
    (appended to ``lines``) that decode its stored value into a local, or hand the whole
    reply to the generic decode (FALLBACK) where that decoder would refuse it: the same
    tests as ``_types._dec_int``/``_dec_float``, without a call per value. The local's
    name; None for any other leaf."""
    if f.optional or f.decode not in (_SCALARS[int][1], _SCALARS[float][1]):
        return None
    fb = env.bind(FALLBACK, "FB")
    n = len(lines)
    r, x = f"r{n}", f"x{n}"
    lines.append(f"    {r} = data[{name!r}]")
    # each test is first a quick one that passes the common text (digits only)
    if f.decode is _SCALARS[int][1]:  # str(int) is the only text (no +, 0-padding, -0, _)
        lines.append(f"    {x} = int({r})")
        lines.append(f"    if not ({r}.isdigit() and ({r}[0] != 48 or len({r}) == 1)) "
                     f"and str({x}).encode() != {r}:")
    else:  # repr's text: no _, +, space, and inf/nan only from their own text
        nf = env.bind(_NON_FINITE, "NF")
        lines.append(f"    {x} = float({r})")
        lines.append(f"    if not ({r}.replace(b'.', b'', 1).isdigit() and {x} - {x} == 0) and "
                     f"(b'_' in {r} or {r}[:1] in (b'+', b'') or {r}.strip() != {r} "
                     f"or ({x} - {x} != 0 and {r} not in {nf})):")
    lines.append(f"        return {fb}")
    return x


def _kwargs(env: _Env, fields: tuple[FieldSpec, ...], prefix: bytes, delim: bytes,
            lines: list[str], depth: int) -> list[str]:
    """``init_name=expression`` of each field; fields with a default that are absent make
    the whole fast path give up (the generic decode leaves them to attrs)."""
    out: list[str] = []
    for f in fields:
        name = prefix + f.stored.encode()
        if f.kind == "struct":
            assert f.cls is not None
            sub = _kwargs(env, f.children, name + delim, delim, lines, depth + 1)
            out.append(f"{f.init_name}={env.bind(f.cls, 'k')}({', '.join(sub)})")
            continue
        local = _inline_number(env, f, name, lines)
        if local is not None:
            out.append(f"{f.init_name}={local}")
        elif f.optional:
            r = f"r{len(lines)}"
            lines.append(f"    {r} = get({name!r})")
            out.append(f"{f.init_name}=(None if {r} is None else {_decode_expr(env, f, r)})")
        else:  # absent: KeyError, and the generic decode decides (default or error)
            out.append(f"{f.init_name}={_decode_expr(env, f, f'data[{name!r}]')}")
    return out


def hash_decoder(spec: ModelSpec) -> Callable[[dict[bytes, bytes], str], Any] | None:
    """``decode(data, id_text)``: the object from an HGETALL reply as a dict, or
    :data:`FALLBACK`; None for a model the generic decode always handles (renamed
    fields)."""
    if _renamed(spec.fields):
        return None
    env = _Env()
    cls = env.bind(spec.cls, "k")
    key = spec.key
    assert key.decode is not None
    fb = env.bind(FALLBACK, "FB")
    lines: list[str] = []
    kwargs = _kwargs(env, spec.fields, b"", spec.delimiter.encode(), lines, 0)
    if key.decode is ID_STR[1]:  # a str id is its text (the str form of the id's bytes)
        kwargs.append(f"{key.init_name}=id_text")
    else:
        id_raw = "id_text.encode('utf-8', 'surrogateescape')"
        kwargs.append(f"{key.init_name}={_decode_expr(env, key, id_raw)}")
    body = ["def decode(data, id_text):", "    get = data.get", "    try:"]
    body += ["    " + line for line in lines]
    body.append(f"        return {cls}({', '.join(kwargs)})")
    body += ["    except Exception:", f"        return {fb}"]
    return build("decode", "\n".join(body) + "\n", env.env)


def _renamed(fields: tuple[FieldSpec, ...]) -> bool:
    return any(f.old_stored or _renamed(f.children) for f in fields)


# ---- keys ---------------------------------------------------------------------------


def _key_fast(spec: ModelSpec) -> tuple[str, str] | None:
    """(predicate on the id ``v``, expression of its text) under which a plain key (no
    hash tag, no buckets) is ``prefix + delimiter + text.translate(table)``: an ASCII str
    id is its own text, an int its decimal text; None for any other model."""
    key = spec.key
    if spec.buckets is not None or spec.hash_tag is not False:
        return None
    if key.check is ID_STR[2] and key.encode is ID_STR[0]:
        return "type(v) is str and v and v.isascii()", "v"
    if key.check is _SCALARS[int][2] and key.encode is _SCALARS[int][0]:
        return "type(v) is int and -INTS < v < INTS", "str(v)"
    return None


def key_text(spec: ModelSpec, generic: Callable[[Any], tuple[str, str]]
             ) -> Callable[[Any], tuple[str, str]]:
    """``key_text(id) -> (key, id text)``: for a plain key (no hash tag, no buckets) of a
    str or int id, the key built inline (an ASCII str id is its own text, an int its
    decimal text); every other id and model goes by ``generic`` (its checks, its errors)."""
    found = _key_fast(spec)
    if found is None:
        return generic
    fast, text = found
    env = _Env()
    gen = env.bind(generic, "g")
    prefix = f"{spec.prefix}{spec.delimiter}"
    table = env.bind(_key_table(spec.delimiter), "t")
    lines = ["def key_text(v):",
             f"    if {fast}:",
             f"        t = {text}",
             f"        return {prefix!r} + {_escaped(spec, 't', table)}, t",
             f"    return {gen}(v)"]
    return build("key_text", "\n".join(lines) + "\n", env.env)


def _escaped(spec: ModelSpec, t: str, table: str) -> str:
    """The expression of the id text ``t`` escaped (``_keys.escape``): an alphanumeric
    text is its own escape when no character the table escapes is alphanumeric (the
    delimiter could be), and then no ``translate`` is run for it."""
    if any(chr(c).isalnum() for c in _key_table(spec.delimiter)):
        return f"{t}.translate({table})"
    return f"({t} if {t}.isalnum() else {t}.translate({table}))"


def _key_table(delimiter: str) -> dict[int, str]:
    escape("", delimiter)  # builds the table
    return _TABLES[delimiter]

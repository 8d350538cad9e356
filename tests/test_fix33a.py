"""Fix 33A (attack 33A F3, F4, F7): no redmodel error and no repr carries a stored value
or the plaintext of anything encrypted (docs/codecs.md "Hidden in errors", "Hidden in
reprs"; docs/models.md).

- F7: a value refused at an encrypted position (a field chain, a blob|fernet model, an
  encrypting Queue, a nested class's encrypted field; alone or inside a container) is
  refused by a reason that never quotes it: the checkers are shared by encrypted and plain
  positions, so no checker quotes a value.
- F3: a migration step's error names only the type of what its function returned, and
  only the type of what it raised (the exception itself is the ``__cause__``).
- F4: every subclass of a class whose values are hidden (decorated or not, by any attrs
  API or a plain ``class``, made before or after the declaration that hides them) hides
  them too.
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any, Optional

import attr
import attrs
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import redmodel
from redmodel.migrations import MigrationError, Migrations, update
from tests.budget import scaled

_N = itertools.count()

# ---- F7: values every checker refuses, drawn at encrypted positions ---------------------


def _fraction_tz() -> st.SearchStrategy[dt.timezone]:
    """A UTC offset with a fraction of a second (refused: it reads back without it)."""
    return st.builds(
        lambda s, us: dt.timezone(dt.timedelta(seconds=s, microseconds=us)),
        st.integers(-86_000, 86_000), st.integers(1, 999_999))


# (type, a value of it every checker refuses, the texts of the value that must not show)
_INEXACT = st.one_of(  # ints with no exact float: beyond 2**53, odd
    st.integers(2**53 + 1, 2**60).filter(lambda i: float(i) != i),
    st.integers(2**60, 2**1023).filter(lambda i: float(i) != i),
    st.integers(2**1024, 2**3000),  # too large for any float at all
).flatmap(lambda i: st.sampled_from([i, -i]))

_REFUSED = st.one_of(
    _INEXACT.map(lambda i: (float, i, [str(i)])),
    st.tuples(st.datetimes(), _fraction_tz()).map(
        lambda p: (dt.datetime, p[0].replace(tzinfo=p[1]),
                   [str(p[1].utcoffset(None)), p[0].replace(tzinfo=p[1]).isoformat()])),
    st.tuples(st.times(), _fraction_tz()).map(
        lambda p: (dt.time, p[0].replace(tzinfo=p[1]),
                   [str(p[1].utcoffset(None)), p[0].replace(tzinfo=p[1]).isoformat()])),
)

_SHAPES = ["alone", "list", "optional", "dict value", "tuple", "nested list"]


def _shaped(shape: str, tp: Any, value: Any) -> tuple[Any, Any]:
    return {
        "alone": (tp, value),
        "list": (list[tp], [value]),
        "optional": (Optional[tp], value),  # noqa: UP045 - a runtime type form
        "dict value": (dict[str, tp], {"k": value}),
        "tuple": (tuple[tp, ...], (value,)),
        "nested list": (list[list[tp]], [[], [value]]),
    }[shape]


@settings(max_examples=scaled(300))
@given(refused=_REFUSED, shape=st.sampled_from(_SHAPES),
       holder=st.sampled_from(["hash field chain", "flat field chain", "blob model chain",
                               "nested class field", "queue codec"]))
def test_a_refused_value_at_an_encrypted_position_is_never_quoted(
        store: redmodel.Store, fresh_keys: None, refused: tuple[Any, Any, list[str]],
        shape: str, holder: str) -> None:
    base, value, texts = refused
    if holder == "queue codec" and shape == "optional":
        shape = "list"  # a Queue's members admit no None (session 37)
    tp, given_value = _shaped(shape, base, value)
    n = next(_N)
    enc = redmodel.field(codec="json|fernet").metadata
    with pytest.raises(redmodel.ValidationError) as info:
        if holder == "queue codec":
            redmodel.containers.Queue(store, f"fx33a_q{n}", tp, codec="json|fernet").push(
                given_value)
        elif holder == "nested class field":
            inner = attrs.make_class(f"In{n}", {"v": attrs.field(type=tp, metadata=enc)})
            m = redmodel.model(prefix=f"fx33a_n{n}", key="id")(attrs.make_class(
                f"N{n}", {"id": attrs.field(type=str), "c": attrs.field(type=inner)}))
            store.save(m(id="a", c=inner(v=given_value)))
        else:
            blob = holder == "blob model chain"
            layout = {"hash field chain": "hash", "flat field chain": "flat"}.get(holder, "blob")
            cls = attrs.make_class(f"E{n}", {
                "id": attrs.field(type=str),
                "v": attrs.field(type=tp, metadata={} if blob else enc)})
            m = redmodel.model(prefix=f"fx33a_e{n}", key="id", layout=layout,
                               codec="json|fernet" if blob else None)(cls)
            store.save(m(id="a", v=given_value))
    shown = f"{info.value}\n{info.value!r}\n{info.value.args!r}"
    for text in texts:
        assert text not in shown


# ---- F3: what a migration function returned or raised is never quoted -------------------

_SECRETS = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]),
                   min_size=6, max_size=20).map(lambda t: "S3cr3t" + t)


@settings(max_examples=scaled(50))
@given(secret=_SECRETS, returned=st.sampled_from(
    ["the field", "a dict", "a tuple", "a list", "a subclass", "a str holding it",
     "another class", "raises KeyError", "raises ValueError"]))
def test_a_migration_error_never_quotes_what_the_function_returned_or_raised(
        store: redmodel.Store, fresh_keys: None, secret: str, returned: str) -> None:
    n = next(_N)

    @redmodel.model(prefix=f"fx33a_m{n}", key="id")
    @attrs.define
    class P:
        id: str
        ssn: str = redmodel.field(codec="json|fernet")

    @attrs.define
    class PSub(P):
        pass

    @attrs.define
    class Other:
        ssn: str

    def raise_(e: Exception) -> Any:
        raise e

    store.save(P(id="a", ssn=secret))
    fn = {"the field": lambda o: o.ssn, "a dict": attrs.asdict,
          "a tuple": lambda o: (o.id, o.ssn), "a list": lambda o: [o.ssn],
          "a subclass": lambda o: PSub(id=o.id, ssn=o.ssn),
          "a str holding it": lambda o: f"id={o.id} ssn={o.ssn}",
          "another class": lambda o: Other(o.ssn),
          "raises KeyError": lambda o: raise_(KeyError(o.ssn)),
          "raises ValueError": lambda o: raise_(ValueError(f"bad ssn {o.ssn}"))}[returned]
    steps = Migrations(f"fx33a_mig{n}")
    steps.add("0001", update(P, fn))
    with pytest.raises(MigrationError) as info:
        steps.apply(store)
    shown = f"{info.value}\n{info.value!r}\n{info.value.args!r}"
    assert secret not in shown and repr(secret)[1:-1] not in shown
    if returned.startswith("raises"):
        assert type(info.value.__cause__).__name__ in str(info.value)  # named, and kept
        assert secret in str(info.value.__cause__.args[0])


# ---- F4: every subclass of a class whose values are hidden hides them --------------------

def _subclass(base: type, how: str, n: int) -> type:
    name = f"Sub{n}"
    made: type = {
        "plain": lambda: type(name, (base,), {}),
        "define": lambda: attrs.define(type(name, (base,), {})),
        "define dict": lambda: attrs.define(slots=False)(type(name, (base,), {})),
        "define no auto_detect": lambda: attrs.define(slots=False, auto_detect=False)(
            type(name, (base,), {})),
        "define repr=False": lambda: attrs.define(repr=False)(type(name, (base,), {})),
        "frozen": lambda: attrs.frozen(type(name, (base,), {})),
        "attr.s": lambda: attr.s(type(name, (base,), {})),
        "attr.s slots": lambda: attr.s(slots=True)(type(name, (base,), {})),
        "make_class": lambda: attrs.make_class(name, {"extra": attrs.field(default=0)},
                                               bases=(base,)),
        "make_class slots": lambda: attrs.make_class(name, {}, bases=(base,), slots=True),
    }[how]()
    return made


_HOWS = ["plain", "define", "define dict", "define no auto_detect", "define repr=False",
         "frozen", "attr.s", "attr.s slots", "make_class", "make_class slots"]


def _hide(kind: str, n: int) -> tuple[type, Any]:
    """A class whose ``number`` is hidden once the returned ``declare`` runs."""
    if kind == "secret model":
        @attrs.define
        class Base:
            number: str
            id: str = "a"

        return Base, lambda: redmodel.model(prefix=f"fx33a_r{n}", key="id", layout="blob",
                                            codec="json|fernet")(Base)

    @attrs.define
    class Base2:
        number: str = redmodel.field(**({"codec": "json|fernet"}
                                        if kind == "nested field chain" else {}))

    tp = {"nested field chain": Base2, "held in a list": list[Base2],
          "held in an optional": Optional[Base2]}[kind]  # noqa: UP045
    enc = {} if kind == "nested field chain" else {"codec": "json|fernet"}

    def declare() -> None:
        redmodel.model(prefix=f"fx33a_r{n}", key="id")(attrs.make_class(f"R{n}", {
            "id": attrs.field(type=str),
            "c": attrs.field(type=tp, default=None,
                             metadata=redmodel.field(**enc).metadata if enc else {})}))

    return Base2, declare


@settings(max_examples=scaled(300))
@given(secret=_SECRETS,
       kind=st.sampled_from(["secret model", "nested field chain", "held in a list",
                             "held in an optional"]),
       chain=st.lists(st.sampled_from(_HOWS), min_size=1, max_size=3),
       made_before=st.integers(0, 3))
def test_every_subclass_of_a_hiding_class_hides(
        secret: str, kind: str, chain: list[str], made_before: int) -> None:
    """A chain of subclasses (each of the one before), the first ``made_before`` of them
    made before the declaration that hides ``number``, the rest after it."""
    n = next(_N)
    base, declare = _hide(kind, n)
    classes: list[type] = []
    for i, how in enumerate(chain):
        if i == made_before:
            declare()
        classes.append(_subclass(classes[-1] if classes else base, how, n * 10 + i))
    if made_before >= len(chain):
        declare()
    for cls in [base, *classes]:
        obj = cls(number=secret)
        # attrs' own quirk: a dict class under a slotted frozen one keeps the value in
        # __dict__, where the slot hides it (its own repr raises AttributeError too)
        assume(getattr(obj, "number", None) == secret)
        shown = repr(obj) + str(obj)
        rich = getattr(obj, "__rich_repr__", None)
        if rich is not None:
            shown += repr(list(rich()))
        assert secret not in shown and repr(secret)[1:-1] not in shown, (cls, shown)


# ---- survey: a Pending's repr shows only the type of its value ---------------------------

@settings(max_examples=scaled(30))
@given(secret=_SECRETS)
def test_the_repr_of_a_pending_pop_of_an_encrypting_queue_shows_no_plaintext(
        store: redmodel.Store, fresh_keys: None, secret: str) -> None:
    """A pop of an encrypting Queue in a transaction holds the plaintext in its Pending;
    its repr (logged with the transaction's results) names only the value's type."""
    q = redmodel.containers.Queue(store, f"fx33a_p{next(_N)}", str, codec="json|fernet")
    q.push(secret)
    got: list[Any] = []

    @redmodel.transaction(store)
    def pop(tx: redmodel.Transaction) -> Any:
        p = q.in_tx(tx).pop()
        got.append(p)
        return p

    assert pop().value == secret
    assert secret not in repr(got[0]) and "str" in repr(got[0])


# ---- survey: verify/reindex reports never show a blind index's entry text ----------------

@settings(max_examples=scaled(20))
@given(secret=_SECRETS, unique=st.booleans())
def test_verify_reports_on_a_blind_index_show_no_token(
        store: redmodel.Store, fresh_keys: None, secret: str, unique: bool) -> None:
    """An entry of a blind index is a keyed hash of the encrypted value: a report names it
    ``<encrypted>``, as UniqueViolationError does, never its text (nor the plaintext)."""
    n = next(_N)
    cls = attrs.make_class(f"B{n}", {
        "id": attrs.field(type=str),
        "ssn": attrs.field(type=str, metadata=redmodel.field(
            codec="json|fernet", index="blind", unique=unique).metadata)})
    m = redmodel.model(prefix=f"fx33a_b{n}", key="id")(cls)
    store.save(m(id="a", ssn=secret))
    client = store.client
    entries = [k for k in client.keys(f"fx33a_b{n}:*") if b"ssn" in k]
    tokens: list[bytes] = []
    for k in entries:
        kind = client.type(k)
        if kind in (b"set", "set"):  # an equality entry set: its key ends with the text
            tokens.append(k.rsplit(b":", 1)[-1])
            client.srem(k, "a")
            client.sadd(k, "ghost")
        elif kind in (b"hash", "hash"):  # the unique index: text -> owner
            for field in client.hkeys(k):
                tokens.append(field.split(b"\x1e")[0])
                client.hset(k, field, "ghost")
    problems = store.verify(m)
    assert problems, "the damage is reported"
    text = "\n".join(problems)
    assert "<encrypted>" in text
    assert secret not in text
    for token in tokens:
        if len(token) >= 8:
            assert token.decode("utf-8", "replace") not in text, (token, text)

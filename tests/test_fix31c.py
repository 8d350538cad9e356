"""Fix 31C: the kinds behind the attack's findings (tests/test_attack31c.py holds one
example of each; notes in /work/notes/s31/FIX-C-NOTES.md).

F1: a container and a model share keys whatever the model's delimiter. One rule
(docs/containers.md, "The container registry"): a model's keys are ``prefix+delimiter*``,
a container's its key and ``key:*`` (its record ``key:{key}:%container``, side keys, a
WindowCounter's counts); they overlap when one of ``prefix+delimiter`` and ``key:`` starts
the other. A store refuses the second of the two it uses, in either order; across stores
the registry refuses it when the model's prefix is one of the key's ``:``-prefixes (or the
key itself, but for a Queue/Set/SortedSet recorded before the model).

F2: rotate_keys refuses every stored value of an encrypted field that no chain decodes,
whatever else is wrong with the object, and still rotates a flat object that only misses a
leaf."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import attrs
import pytest
import redis
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import redmodel
from redmodel._models._specs import spec_of
from redmodel.codecs import FernetTransform, codec
from redmodel.containers import Queue, Set, SortedSet, WindowCounter
from tests.budget import scaled
from tests.keys import use_keys

# ---- F1 ---------------------------------------------------------------------------------

_COUNT = itertools.count()
# parts of prefixes and keys; the delimiters below never hold "n" or a digit, so the
# namespace n<k>n in front of both keeps every prefix legal and every relation as drawn
PART = st.text(alphabet="ab|/.", min_size=1, max_size=3)
DELIMITERS = st.sampled_from([":", "|", "/", ".", "a", ":|", "||", "|:", "::", "/."])
KINDS = st.sampled_from(["Queue", "Set", "SortedSet", "WindowCounter"])


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, str, str, str]:
    """(prefix, delimiter, container key, kind): the key often near the model's space."""
    delimiter = draw(DELIMITERS)
    prefix = draw(st.lists(PART, min_size=1, max_size=2).map(":".join))
    if delimiter in prefix:
        prefix = prefix.replace(delimiter, "b") or "b"
    space = prefix + delimiter
    key = draw(st.one_of(
        st.lists(PART, min_size=1, max_size=3).map(":".join),  # anywhere
        st.just(prefix),                                          # the prefix itself
        PART.map(lambda t: space + t),                            # inside the space
        PART.map(lambda t: prefix + ":" + t),                     # under prefix:
        st.just(space.rstrip(":")),                               # the space, no ':'
        st.integers(1, max(1, len(prefix))).map(lambda i: prefix[:i]),  # a prefix of it
    ))
    key = ":".join(p for p in key.split(":") if p) or "b"  # container key parts: no empty
    return prefix, delimiter, key, draw(KINDS)


def overlaps(space: str, key: str) -> bool:
    """The oracle: a key both the model's SCAN pattern ``space*`` and the container's
    keys (``key`` itself, ``key:`` followed by anything) can be."""
    if key.startswith(space):  # the container's key is one of the model's
        return True
    own = key + ":"
    # some key:<anything> starts with space: space is a prefix of key:, or extends it
    return own.startswith(space) or space.startswith(own)


def model(prefix: str, delimiter: str) -> type:
    cls = type(f"M31c{next(_COUNT)}", (), {
        "__annotations__": {"n": int, "id": str}, "n": 0,
        "id": redmodel.key_field(generated=False)})
    return redmodel.model(prefix=prefix, delimiter=delimiter)(attrs.define(cls))


def container(store: Any, kind: str, key: str) -> Callable[[], Any]:
    """The container's first use (a write)."""
    parts = tuple(key.split(":"))
    if kind == "Queue":
        return lambda: Queue(store, parts, str).push("m")
    if kind == "Set":
        return lambda: Set(store, parts, str).add("m")
    if kind == "SortedSet":
        return lambda: SortedSet(store, parts, str).add("m", 1.0)
    return lambda: WindowCounter(store, parts).incr("1.2.3.4")


def snapshot(client: Any, namespace: str) -> dict[bytes, Any]:
    """Every key of the namespace with its type and value (DUMP)."""
    if hasattr(client, "get_primaries"):
        keys = [k for node in client.get_primaries()
                for k in client.scan_iter(match=f"{namespace}*", target_nodes=node)]
    else:
        keys = list(client.scan_iter(match=f"{namespace}*"))
    return {k: (client.type(k), client.dump(k)) for k in keys}


def _run(first: Callable[[], Any], second: Callable[[], Any], client: Any, ns: str
         ) -> redmodel.SchemaConflictError | None:
    """Run ``first``, then ``second``; the second's refusal (nothing written), or None."""
    first()
    before = snapshot(client, ns)
    try:
        second()
    except redmodel.SchemaConflictError as e:
        assert snapshot(client, ns) == before, "the refused first use wrote something"
        return e
    return None


def _check(stores: tuple[Any, Any], client: Any, case: tuple[str, str, str, str],
           model_first: bool, across: bool) -> None:
    ns = f"n{next(_COUNT)}n"
    prefix, delimiter, key, kind = case
    prefix, key = ns + prefix, ns + key
    cls = model(prefix, delimiter)
    save = lambda: stores[0].save(cls(1, id="i"))  # noqa: E731
    use = container(stores[1], kind, key)
    refused = _run(save, use, client, ns) if model_first else _run(use, save, client, ns)
    expected = overlaps(prefix + delimiter, key)
    if across:  # the registry records meet at the key's ':'-prefixes, and at the key
        # itself when the model came first or the container is a WindowCounter
        parts = key.split(":")
        meet = {":".join(parts[:i]) for i in range(1, len(parts))}
        if model_first or kind == "WindowCounter":
            meet.add(key)
        expected = expected and prefix in meet
    event(f"{'refused' if expected else 'accepted'}, {kind}, model first: {model_first}")
    assert (refused is not None) == expected, (prefix, delimiter, key, kind, refused)
    if refused is not None:  # the error names both
        assert key in str(refused) and prefix in str(refused), str(refused)


@settings(max_examples=scaled(150, floor=15),
          suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(case=cases(), model_first=st.booleans())
def test_one_store_refuses_a_container_and_a_model_sharing_keys_in_either_order(
        any_store: Any, case: tuple[str, str, str, str], model_first: bool) -> None:
    """Any delimiter, any prefix (with ':' or not), every container kind, either order,
    sync/async/cluster: refused (SchemaConflictError naming both, nothing written) iff a
    key can be both the model's and the container's."""
    _check((any_store, any_store), any_store.client, case, model_first, across=False)


@pytest.fixture(params=["server", "cluster"])
def raw_client(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(
        "redis_client" if request.param == "server" else "redis_cluster_client")


@settings(max_examples=scaled(150, floor=15),
          suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(case=cases(), model_first=st.booleans())
def test_two_stores_meet_at_the_registry_records_of_the_keys_prefixes(
        raw_client: Any, case: tuple[str, str, str, str], model_first: bool) -> None:
    """Two stores (two processes): the registry refuses the second first use, exactly
    (by the model's delimiter), when the model's prefix is a ':'-prefix of the container
    key, or the key itself when the model came first or the container is a WindowCounter;
    elsewhere (docs/containers.md says so) only a store that uses both refuses."""
    cls = redmodel.Store
    _check((cls(raw_client), cls(raw_client)), raw_client, case, model_first, across=True)


def test_clear_of_a_refused_container_deletes_no_object_of_the_model(
        redis_client: redis.Redis) -> None:
    """A container key that is a model's object key: clear() refuses while the key holds
    a value (the model's object), and clears an empty one."""
    store = redmodel.Store(redis_client)
    cls = model("f31c_obj", "|")
    store.save(cls(1, id="a"))
    s = Set(store, "f31c_obj|a", str)
    with pytest.raises(redmodel.SchemaConflictError, match="f31c_obj"):
        s.clear()
    assert store.get(cls, "a") == cls(1, id="a")
    empty = Set(store, "f31c_obj|b", str)
    assert empty.clear() is False
    assert not redis_client.exists("f31c_obj|b:{f31c_obj|b}:%container")
    store.delete(cls, "a")


# ---- F2 ---------------------------------------------------------------------------------


@attrs.define
class Inner:
    code: str = redmodel.field(codec="json|fernet")
    note: str = "n"


def _secret_model(layout: str) -> type:
    ns = f"f31c_rot{next(_COUNT)}"
    if layout == "blob":
        body: dict[str, Any] = {
            "__annotations__": {"name": str, "secret": str, "id": str},
            "id": redmodel.key_field(generated=False)}
        return redmodel.model(prefix=ns, layout="blob", codec="json|fernet")(
            attrs.define(type("RotBlob", (), body)))
    body = {"__annotations__": {"name": str, "secret": str, "inner": Inner, "id": str},
            "secret": redmodel.field(codec="json|fernet"),
            "inner": attrs.Factory(lambda: Inner("c")),
            "id": redmodel.key_field(generated=False)}
    return redmodel.model(prefix=ns, layout=layout)(
        attrs.define(type(f"Rot{layout}", (), body)))


VALUES = st.sampled_from(["plain", "json", "other_chain", "other_key", "good"])


def _encoded(chain: str, value: Any) -> bytes:
    return codec(chain).encode(value)


@settings(max_examples=scaled(300, floor=30),
          suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(layout=st.sampled_from(["flat", "hash", "blob"]), secret=VALUES, code=VALUES,
       missing=st.sets(st.sampled_from(["name", "inner:note", "inner:code"])))
def test_rotation_refuses_any_value_no_chain_decodes_whatever_else_is_missing(
        redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch, layout: str,
        secret: str, code: str, missing: set[str]) -> None:
    """Flat (leaves missing or not), hash (a field missing or not) and blob objects whose
    encrypted values are plaintext, a json value without fernet, another chain's, a token
    under a key no longer configured, or good: rotate_keys raises DecodeError naming the
    key, with nothing written, iff one such value is there; a flat object that only misses
    leaves has what is left rotated to the newest key."""
    old, new, gone = (FernetTransform.generate_key() for _ in range(3))
    use_keys(monkeypatch, fernet=[gone])
    stray = _encoded("json|fernet", "987-65-4321")  # under a key that is not configured
    use_keys(monkeypatch, fernet=[old])
    store = redmodel.Store(redis_client)
    cls = _secret_model(layout)
    key = spec_of(cls).key_for("p")
    store.save(cls(name="ann", secret="s1", id="p"))  # type: ignore[call-arg]
    values = {"plain": b"987-65-4321", "json": b'\xa7\x04json"987-65-4321"',
              "other_chain": _encoded("msgpack|fernet", "987-65-4321"),
              "other_key": stray}
    if layout == "flat":
        for leaf, kind in (("secret", secret), ("inner:code", code)):
            if kind != "good":
                redis_client.set(f"{key}:{leaf}", values[kind])
        for leaf in missing:
            redis_client.delete(f"{key}:{leaf}")
        bad = secret != "good" or (code != "good" and "inner:code" not in missing)
    elif layout == "hash":
        if secret != "good":
            redis_client.hset(key, "secret", values[secret])
        if "name" in missing:  # a field without a default: get names it, so does this
            redis_client.hdel(key, "name")
        bad = secret != "good" or "name" in missing
    else:
        if secret != "good":
            redis_client.set(key, values[secret])
        bad = secret != "good"
    use_keys(monkeypatch, fernet=[new, old])  # a new key: rotate_keys has work to do
    before = snapshot(redis_client, key)
    if bad:
        with pytest.raises(redmodel.DecodeError, match=key):
            store.rotate_keys(cls)
        assert snapshot(redis_client, key) == before, "a refused rotation wrote something"
        return
    store.rotate_keys(cls)
    use_keys(monkeypatch, fernet=[new])  # what is left reads under the new key alone
    if layout == "flat":
        for leaf in ("secret", "inner:code"):
            raw = redis_client.get(f"{key}:{leaf}")
            if raw is not None:  # rotated: it reads under the new key alone
                assert codec("json|fernet").decode(raw, str) in ("s1", "c")
    else:
        assert store.get(cls, "p") is not None


def test_a_read_plan_in_a_transaction_records_and_marks_a_key_with_colons(
        redis_client: redis.Redis) -> None:
    """tx.query of a container plan on a store's first use records the key outside the
    transaction, its marks in the model registry records of its ':'-prefixes too (they
    were taken for a write of the read plan: TransactionError)."""
    store = redmodel.Store(redis_client)
    seen = Set(store, ("f31c_tx", "seen"), str)

    @redmodel.transaction(store)
    def work(tx: Any) -> Any:
        return tx.query(seen.members_plan())

    assert work() == set()
    assert redis_client.hexists("f31c_tx:%schema", "container:f31c_tx:seen")
    seen.clear()

"""Fix 31J: the kinds behind the attack's findings (tests/test_attack31j.py holds one
example of each; notes in /work/notes/s31/FIX-J-NOTES.md).

F1: every step of a container's first use (the read of its record, the claim that creates
it, the marks at its ``:``-prefixes' model registry records) and of a model's first
registration ends in one registry state whatever fails around it (a lost or cut reply,
a dropped request, a stall, resends running out, a process stopping between claim and
marks): of a container and a model sharing keys, the first whose use succeeded wins and
the other is refused in every store afterwards (docs/containers.md, "The container
registry").

F2: rotate_keys re-encrypts exactly the values of the fields declared with a key-holding
chain (nested ones, old names); a plain ``bytes``/``str`` field is never rewritten nor
decoded, whatever its bytes start with (docs/store.md, ``rotate_keys``)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Generator
from typing import Any

import attrs
import pytest
import redis
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import redmodel
from redmodel._indexes._registry import REGISTER
from redmodel._models._specs import spec_of
from redmodel._plan import Batch
from redmodel.codecs import FernetTransform, codec
from redmodel.containers import Queue, Set, SortedSet, WindowCounter
from redmodel.testing import FaultProxy, has
from tests.budget import scaled
from tests.faults import FAST_RESEND, store_through
from tests.keys import use_keys

_COUNT = itertools.count()

# ---- F1 ---------------------------------------------------------------------------------

KINDS = st.sampled_from(["Queue", "Set", "SortedSet", "WindowCounter"])
# what goes wrong: once (the resend hides it), every time until the resends run out (the
# write landed each time / never), a stall, or the process stops before the step's batch
FAULTS = st.sampled_from(["lose_reply", "cut_reply", "drop_request", "stall", "lost_all",
                          "dropped_all", "kill"])
# after a first use that failed: nobody tries again, the same store does, another does
RETRIES = st.sampled_from(["none", "same", "other"])


class _Killed(Exception):
    """The process stopped (nothing more of the plan is sent, nothing raised to anyone)."""


def _model(prefix: str, delimiter: str) -> type:
    cls = type(f"M31j{next(_COUNT)}", (), {
        "__annotations__": {"n": int, "id": str}, "n": 0,
        "id": redmodel.key_field(generated=False)})
    return redmodel.model(prefix=prefix, delimiter=delimiter)(attrs.define(cls))


def _container_plan(store: Any, kind: str, parts: tuple[str, ...]) -> Any:
    """The container's first use (a write), as a plan."""
    if kind == "Queue":
        return Queue(store, parts, str).push_plan("m")
    if kind == "Set":
        return Set(store, parts, str).add_plan("m")
    if kind == "SortedSet":
        return SortedSet(store, parts, str).add_many_plan({"m": 1.0})
    return WindowCounter(store, parts, window=60).incr_plan("1.2.3.4")


def _killed_at(plan: Any, step: Callable[[Batch], bool]) -> Generator[Any, Any, Any]:
    """``plan``, stopping (as a killed process does) before it sends the batch ``step``
    matches."""
    batch = next(plan)
    while True:
        if step(batch):
            plan.close()
            raise _Killed
        batch = plan.send((yield batch))


def _names(batch: Batch, command: str, key: str) -> bool:
    return any(c[0] == command and key in c[1:] for c in batch.commands)


def _attempt(use: Callable[[], Any]) -> str:
    """``ok``, ``refused`` (SchemaConflictError) or ``failed`` (the fault reached the
    caller: a connection error, an unknown outcome, a stopped process)."""
    try:
        use()
    except redmodel.SchemaConflictError:
        return "refused"
    except (redis.ConnectionError, redis.TimeoutError, _Killed):
        return "failed"
    return "ok"


@st.composite
def f1_cases(draw: st.DrawFn) -> tuple[str, tuple[str, ...], int, bool, str, str, str]:
    """(kind, the key's parts after the namespace, which marked prefix is the model's
    (its index: 0 the namespace alone), container first?, the step the fault hits, the
    fault, the retry)."""
    kind = draw(KINDS)
    parts = tuple(draw(st.permutations(["x", "y", "z"]))[:draw(st.integers(1, 2))])
    # the records a container marks: each ':'-prefix of its key, a WindowCounter's own key
    at = draw(st.integers(0, len(parts) - (0 if kind == "WindowCounter" else 1)))
    container_first = draw(st.booleans())
    steps = ["read", "claim", "marks"] if container_first else ["read", "register"]
    fault = draw(FAULTS)
    if not container_first and fault == "kill":
        fault = "dropped_all"  # one script: stopping before it is a request never sent
    return kind, parts, at, container_first, draw(st.sampled_from(steps)), fault, \
        draw(RETRIES)


def _arm(proxy: FaultProxy, fault: str, command: str, key: str) -> None:
    when = has(key)
    if fault in ("lose_reply", "cut_reply", "drop_request"):
        getattr(proxy, fault)(command, when=when)
    elif fault == "stall":
        proxy.stall(command, 0.2, when=when)
    elif fault == "lost_all":
        proxy.lose_reply(command, times=50, when=when)
    elif fault == "dropped_all":
        proxy.drop_request(command, times=50, when=when)


@settings(max_examples=scaled(150, floor=20),
          suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(case=f1_cases())
def test_a_first_use_ends_in_one_registry_state_whatever_fails(
        proxy: FaultProxy, redis_client: redis.Redis,
        case: tuple[str, tuple[str, ...], int, bool, str, str, str]) -> None:
    """A container key with ':' and a model whose prefix is one of the records the key's
    first use marks (``:``-prefixes; a WindowCounter's own key): the first of the two is
    used through a proxy that makes one step of its first use fail (read, claim, marks;
    a model's read or registration script) in every way; it may be tried again (same
    store, another). Then the second is used by other stores. Oracle: of the two, the
    first whose use succeeded wins, the other is refused (SchemaConflictError) in every
    store afterwards; a container that won has its record and every mark."""
    kind, parts, at, container_first, step, fault, retry = case
    ns = f"f31j{next(_COUNT)}n"
    key_parts = (ns, *parts)
    key = ":".join(key_parts)
    prefix = ":".join(key_parts[:at + 1])
    # a delimiter whose key space holds the container's keys: ':' for the namespace
    # alone; a prefix with ':' cannot have ':', so ':' and the next part's letter (the
    # key is then one of the model's keys), or for a WindowCounter's own key ':w' (its
    # counts <key>:<subject>:... start with it when the subject does)
    delimiter = ":" if at == 0 else ":" + (key_parts[at + 1] if at + 1 < len(key_parts)
                                           else "w")
    cls = _model(prefix, delimiter)
    record = f"{key}:{{{key}}}:%container"
    schema = f"{prefix}:%schema"
    marked = [":".join(key_parts[:i]) for i in range(1, len(key_parts))]
    if kind == "WindowCounter":
        marked.append(key)
    first_store = store_through(proxy, resend=FAST_RESEND)

    def container(store: Any, kill: Callable[[Batch], bool] | None = None
                  ) -> Callable[[], Any]:
        def use() -> Any:
            plan = _container_plan(store, kind, key_parts)
            return store.run(plan if kill is None else _killed_at(plan, kill))
        return use

    def model(store: Any) -> Callable[[], Any]:
        return lambda: store.save(cls(1, id="i"))

    kill = None
    if container_first:
        command, target = {"read": ("HGETALL", record), "claim": ("EVALSHA", record),
                           "marks": ("HSET", f"{marked[0]}:%schema")}[step]
        if fault == "kill":
            kill = lambda b: _names(b, command, target)  # noqa: E731
        first, second = container(first_store, kill), model
        again = container
    else:
        command, target = {"read": ("HGETALL", schema), "register": ("EVALSHA", schema)}[step]
        first, second = model(first_store), container
        again = model
    _arm(proxy, fault, command, target)
    try:
        outcome = _attempt(first)
        proxy.clear()
        assert proxy.quiet(), "a stalled command was never answered"
        assert outcome != "refused", "nothing was in the way"
        event(f"{'container' if container_first else 'model'} first, {step}, {fault}: "
              f"{outcome}")
        if outcome == "failed" and retry != "none":
            outcome = _attempt(again(first_store if retry == "same"
                                     else redmodel.Store(redis_client)))
            assert outcome == "ok", f"the retry of a failed first use: {outcome}"
        later = _attempt(second(redmodel.Store(redis_client)))
        if outcome == "ok":
            assert later == "refused", (
                f"{'container' if container_first else 'model'} {key!r} / {prefix!r} won "
                f"after {fault} at {step}, and the other was accepted after it")
        else:  # the first never succeeded: whichever comes next wins, the other loses
            assert later != "failed"
            loser = again if later == "ok" else second
            winner = second if later == "ok" else again
            if later == "refused":  # the first's write landed: its next use completes it
                assert _attempt(winner(redmodel.Store(redis_client))) == "ok"
            assert _attempt(loser(redmodel.Store(redis_client))) == "refused"
        first_won = outcome == "ok" or later == "refused"
        if first_won == container_first:  # the container won: its record, and a mark in
            # each record its key's first use marks
            assert redis_client.hget(record, "kind") == kind.encode()
            for p in marked:
                assert redis_client.hget(f"{p}:%schema", f"container:{key}"), (p, key)
    finally:
        proxy.clear()
        for k in redis_client.scan_iter(f"{ns}*"):
            redis_client.delete(k)


def test_a_resent_registration_that_landed_answers_ok_whatever_came_meanwhile(
        redis_client: redis.Redis) -> None:
    """The registration script (one call: schema, owner, version) resent after its first
    run wrote (its reply lost) answers OK, as the first run did, even when a container
    marked the record meanwhile (that container rereads the owner after marking and is
    refused): before, the resend answered CONTAINER and the model was refused too, its
    record written. A call whose version is no longer the record's decides afresh."""
    key = "f31j_reg:%schema"
    store = redmodel.Store(redis_client)

    def register(version: str) -> str:
        def plan() -> Generator[Any, Any, str]:
            replies = yield Batch([REGISTER.call(
                [key], ["", '{"s":1}', "owner", "f31j_reg:", "version", version])],
                write=True, idempotent=True, keys=[key])
            return replies[0].decode() if isinstance(replies[0], bytes) else replies[0]
        return store.run(plan())

    try:
        assert register("v1") == "OK"
        redis_client.hset(key, "container:f31j_reg:x", "Queue of str")
        assert register("v1") == "OK"  # the resend of the call that wrote
        assert redis_client.hget(key, "version") == b"v1"
        assert register("v2") == "CONTAINER"  # another call reading no record
    finally:
        redis_client.delete(key)


# ---- F2 ---------------------------------------------------------------------------------

CHAINS = ["json|fernet", "msgpack|fernet", "msgpack|zlib|fernet", "json", "msgpack",
          "json|zlib"]


@attrs.define
class Inner:
    code: str = redmodel.field(codec="msgpack|fernet", old_names=["c0"])
    note: bytes = b""


def _rot_model(layout: str) -> type:
    ns = f"f31j_rot{next(_COUNT)}"
    if layout == "blob":
        body: dict[str, Any] = {
            "__annotations__": {"secret": str, "raw": bytes, "text": str, "id": str},
            "raw": b"", "text": "", "id": redmodel.key_field(generated=False)}
        return redmodel.model(prefix=ns, layout="blob", codec="json|fernet")(
            attrs.define(type("RotBlob", (), body)))
    body = {"__annotations__": {"secret": str, "raw": bytes, "text": str, "inner": Inner,
                                "id": str},
            "secret": redmodel.field(codec="json|fernet", old_names=["s0"]),
            "raw": b"", "text": "",
            "inner": attrs.Factory(lambda: Inner("c")),
            "id": redmodel.key_field(generated=False)}
    return redmodel.model(prefix=ns, layout=layout)(
        attrs.define(type(f"Rot{layout}", (), body)))


@st.composite
def plain_bytes(draw: st.DrawFn, token: Callable[[str], bytes]) -> bytes:
    """Bytes that start with a chain's header: a whole value of it (under the key being
    rotated away), its header then anything, or a value cut short."""
    chain = draw(st.sampled_from(CHAINS))
    whole = token(chain)
    header = codec(chain)._header
    how = draw(st.sampled_from(["whole", "header", "cut"]))
    if how == "whole":
        return whole
    if how == "header":
        return header + draw(st.binary(max_size=12))
    return whole[:draw(st.integers(len(header), max(len(header), len(whole) - 1)))]


@settings(max_examples=scaled(200, floor=20),
          suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(layout=st.sampled_from(["hash", "flat", "blob"]), data=st.data())
def test_rotation_rotates_the_encrypted_fields_and_leaves_plain_ones_as_they_are(
        redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch, layout: str,
        data: st.DataObject) -> None:
    """A model with encrypted fields (top-level and nested, stored under a current or an
    old name) and plain ``bytes``/``str`` fields (top-level and nested) whose values start
    with every chain's header (whole values under the old key, header then junk, cut
    short): rotate_keys succeeds, every plain value is stored byte for byte as before,
    every encrypted value is rewritten and reads under the new key alone, and ``get``
    returns what was saved."""
    old, new = FernetTransform.generate_key(), FernetTransform.generate_key()
    use_keys(monkeypatch, fernet=[old])

    def token(chain: str) -> bytes:
        return codec(chain).encode("forward me", str)

    raw = data.draw(plain_bytes(token), label="raw")
    text = data.draw(plain_bytes(token).map(lambda b: b.decode("latin-1")), label="text")
    note = data.draw(plain_bytes(token), label="note")
    renamed = data.draw(st.booleans(), label="encrypted values under their old names")
    cls = _rot_model(layout)
    spec = spec_of(cls)
    key = spec.key_for("p")
    kwargs: dict[str, Any] = {"secret": "s1", "raw": raw, "text": text, "id": "p"}
    if layout != "blob":
        kwargs["inner"] = Inner("c1", note)
    obj = cls(**kwargs)
    store = redmodel.Store(redis_client)
    store.save(obj)
    if renamed and layout == "hash":  # as an older version stored them
        redis_client.hset(key, "s0", redis_client.hget(key, "secret") or b"")
        redis_client.hset(key, "inner:c0", redis_client.hget(key, "inner:code") or b"")
        redis_client.hdel(key, "secret", "inner:code")
    keys = [k for k in redis_client.scan_iter(f"{spec.prefix}*") if b"%schema" not in k]
    before = {k: (redis_client.type(k), redis_client.dump(k)) for k in keys}

    def stored() -> dict[bytes, bytes]:
        out: dict[bytes, bytes] = {}
        for k in sorted(keys):
            if redis_client.type(k) == b"hash":
                for f, v in redis_client.hgetall(k).items():
                    out[k + b"#" + f] = v
            else:
                out[k] = redis_client.get(k) or b""
        return out

    was = stored()
    use_keys(monkeypatch, fernet=[new, old])
    try:
        store.rotate_keys(cls)
        now = stored()
        assert set(now) == set(was)
        plain = {k for k in was if k.endswith((b"raw", b"text", b"note"))}
        encrypted = {k for k in was if k.endswith((b"secret", b"code", b"s0", b"c0"))}
        if layout == "blob":
            encrypted = set(was)
        else:
            assert plain and encrypted and len(plain) + len(encrypted) <= len(was)
        for k in plain:
            assert now[k] == was[k], f"rotate_keys rewrote the plain value {k!r}"
        for k in encrypted:
            assert now[k] != was[k], f"rotate_keys left {k!r} under the old key"
        use_keys(monkeypatch, fernet=[new])  # the old key is gone: all reads under the new
        assert store.get(cls, "p") == obj
        assert sorted(before) == sorted(keys)
    finally:
        store.delete(cls, "p")

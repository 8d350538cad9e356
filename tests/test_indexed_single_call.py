"""An indexed model's whole save takes the single-call path (redmodel._plans._single): its
first batch, the index write script's call, is sent without a plan; a reply 1 is settled
as the plan settles it, and any other reply goes on with the plan's own rest
(``_objects.indexed_rest``: ``run_writes(..., first=[reply])``). These tests hold it to
the plan it replaces (the store's ``save`` with ``_single.save`` answering None):

- a property over sequences of saves (whole, forced, of loaded objects), loads and
  changes, raw writes behind the store's back (a field changed, an unknown field, an
  object stored without any index record: UNLISTED), objects expired or deleted under
  their index entries, and keys of another type planted at the object key or at any index
  key; values of the whole kind (NaN, +-inf, -0.0, ints beyond 2**63, empty, huge and
  surrogate strings, ids with ``: { } * % \\``), unique values taken by another object,
  TTLs given, kept (None) and the model's own: the single-call store (database 0) and the
  plan's (database 1), sync and asyncio, send the same batches (flags and objects
  included) in the same order, answer the same (result, or error type and message), leave
  the same keys, values and expiries, and leave every object the same snapshot (tracked
  state, key, client) and the same stale fields; a save whose first reply is 1 runs no
  plan;
- through every shell (sync, asyncio, a cluster, an asyncio cluster), a bucketed indexed
  model's whole saves keep its index in step with its objects;
- a lost reply, a dropped request and a stalled one on the single send, exactly-once on
  and off, sync and asyncio: the save is applied once or not at all, its outcome says
  which, and the plan path's outcome is the same (for a lost reply and a dropped request;
  a stalled copy's fate depends on timing, on either path).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
import redis
import redis.asyncio
from hypothesis import example, given, settings
from hypothesis import strategies as st

import redmodel
from redmodel._layouts import _hash
from redmodel._layouts._pick import layout_of
from redmodel._models._specs import spec_of
from redmodel._plan import Batch
from redmodel._plans import _single
from redmodel._plans._objects import DEFAULT
from redmodel.testing import FaultProxy
from tests.budget import scaled
from tests.conftest import AsyncFacade
from tests.faults import FAST_RESEND, arm_fault, client_options, marked
from tests.strategies import SCALARS, TRICKY
from tests.strategies import text as any_text

pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")


@redmodel.model(prefix="isc")  # indexed, hence tracked; one server slot: no claims
@attrs.define
class Hat:
    color: str = redmodel.field(index=True)
    price: float = redmodel.field(index="range")
    count: int = redmodel.field(default=0, index="range")
    code: str | None = redmodel.field(default=None, unique=True)
    note: str | None = None
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="isd", ttl=500, track_changes=False)  # untracked, a default TTL
@attrs.define
class Tag:
    label: str = redmodel.field(index=True)
    size: int | None = redmodel.field(default=None, index=True)
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="ise", buckets=3)  # unique values claimed in buckets: the plan
@attrs.define
class Badge:
    code: str = redmodel.field(unique=True)
    id: str = redmodel.key_field(generated=False)


MODELS = (Hat, Tag, Badge)
SINGLE = (Hat, Tag)  # the models whose whole save takes the single call


def _plan_only(*_: Any) -> None:
    return None


class Recording(redmodel.Store):
    """A Store that notes every batch it sends (with the batch's objects, which a Batch
    does not compare) and every plan it runs."""

    plan_path = False

    def __init__(self, client: Any, **options: Any) -> None:
        super().__init__(client, registry=False, **options)  # every model checked
        self.sent: list[tuple[Batch, Any]] = []
        self.plans = 0
        send = self._execute  # (the store's own attribute: its link's execute)

        def execute(batch: Batch) -> list[Any]:
            self.sent.append((batch, batch.objects))
            return send(batch)

        self._execute = execute  # type: ignore[method-assign]

    def run(self, plan: Any) -> Any:
        self.plans += 1
        return super().run(plan)

    def save(self, obj: Any, **kwargs: Any) -> str:
        if not self.plan_path:
            return super().save(obj, **kwargs)
        real = _single.save
        _single.save = _plan_only  # type: ignore[assignment]
        try:
            return super().save(obj, **kwargs)
        finally:
            _single.save = real


class AsyncRecording(redmodel.AsyncStore):
    """:class:`Recording` for the asyncio store."""

    plan_path = False

    def __init__(self, client: Any, **options: Any) -> None:
        super().__init__(client, registry=False, **options)
        self.sent: list[tuple[Batch, Any]] = []
        self.plans = 0
        send = self._execute

        async def execute(batch: Batch) -> list[Any]:
            self.sent.append((batch, batch.objects))
            return await send(batch)

        self._execute = execute  # type: ignore[method-assign]

    async def run(self, plan: Any) -> Any:
        self.plans += 1
        return await super().run(plan)

    async def save(self, obj: Any, **kwargs: Any) -> str:
        if not self.plan_path:
            return await super().save(obj, **kwargs)
        real = _single.save
        _single.save = _plan_only  # type: ignore[assignment]
        try:
            return await super().save(obj, **kwargs)
        finally:
            _single.save = real


class Side:
    """One store of the comparison: its calls (``store``: a Store, or an AsyncStore behind
    the sync facade), a sync client of its database for raw writes, and the client its
    snapshots name (the store's own)."""

    def __init__(self, store: Any, raw: redis.Redis, own: Any) -> None:
        self.store, self.raw, self.own = store, raw, own
        self.kept: list[Any] = []  # every object it saved or loaded
        self.slots: dict[int, Any] = {}  # loaded objects, by slot

    def __repr__(self) -> str:
        return f"Side(db={self.raw.get_connection_kwargs().get('db')})"

    @property
    def recorder(self) -> Any:
        return getattr(self.store, "_astore", self.store)


def _side(kind: str, url: str, db: int, plan_path: bool, **options: Any) -> Side:
    raw = redis.Redis.from_url(url, db=db)
    raw.flushdb()
    if kind == "sync":
        store = Recording(redis.Redis.from_url(url, db=db), **options)
        store.plan_path = plan_path
        return Side(store, raw, store.client)
    astore = AsyncRecording(redis.asyncio.Redis.from_url(url, db=db), **options)
    astore.plan_path = plan_path
    return Side(AsyncFacade(astore, raw), raw, astore.client)


@pytest.fixture(params=["sync", "async"])
def pair(request: pytest.FixtureRequest, redis_url: str) -> Iterator[tuple[Side, Side]]:
    """(the single-call store on database 0, the plan's on database 1)."""
    fast = _side(request.param, redis_url, 0, False)
    slow = _side(request.param, redis_url, 1, True)
    yield fast, slow
    for side in (fast, slow):
        side.raw.flushdb()
        side.store.close()
        side.raw.close()


# ---- the property ----------------------------------------------------------------------

IDS = st.one_of(st.sampled_from(["a", "x:y", "{t}", "*", "%25", "\\", "é", "\ud800"]),
                st.lists(st.one_of(TRICKY, st.text(max_size=2)), min_size=1,
                         max_size=4).map("".join).filter(bool))
FEW = st.sampled_from(["a", "x:y", "{t}", "*%\\"])  # ids met again: stored ones
HUGE = "h" * 70_000
TEXTS = st.one_of(st.sampled_from(["red", "blue", "", HUGE, "\ud800", "a:b*{c}%"]),
                  any_text)
CODES = st.one_of(st.none(), st.sampled_from(["c1", "c2", ""]), any_text)
FLOATS = st.one_of(st.sampled_from([0.0, -0.0, 1.5, float("nan"), float("inf"),
                                    float("-inf"), 2.0**60]), st.floats())
INTS = st.one_of(st.integers(-5, 5), SCALARS[int])
TTLS = st.sampled_from([DEFAULT, None, 100, 1000.5])


def hats(ids: st.SearchStrategy[str] = FEW) -> st.SearchStrategy[Hat]:
    return st.builds(Hat, color=TEXTS, price=FLOATS, count=INTS, code=CODES,
                     note=st.one_of(st.none(), TEXTS), id=st.one_of(ids, IDS))


def tags() -> st.SearchStrategy[Tag]:
    return st.builds(Tag, label=TEXTS, size=st.one_of(st.none(), INTS),
                     id=st.one_of(FEW, IDS))


def badges() -> st.SearchStrategy[Badge]:
    return st.builds(Badge, code=CODES.filter(lambda c: c is not None),
                     id=st.one_of(FEW, IDS))


OBJECTS = st.one_of(hats(), tags(), badges())
FORCE = st.sampled_from([False, True])
SLOTS = st.integers(0, 2)
STEP = st.one_of(
    st.tuples(st.just("save"), OBJECTS, TTLS, FORCE),
    st.tuples(st.just("load"), st.sampled_from(MODELS), FEW, SLOTS),
    st.tuples(st.just("change"), SLOTS, st.sampled_from(["color", "price", "code", "label"]),
              st.one_of(TEXTS, FLOATS)),
    st.tuples(st.just("resave"), SLOTS, TTLS, FORCE),
    # behind the store's back: a field changed (an unknown one: stale on the next load)
    st.tuples(st.just("raw"), st.sampled_from(MODELS), FEW,
              st.sampled_from(["color", "code", "price", "label", "zz"]),
              st.sampled_from([b"red", b"c1", b"7", b"\xff"])),
    st.tuples(st.just("unlisted"), st.one_of(hats(), tags())),  # stored without an index
    st.tuples(st.just("gone"), st.sampled_from(MODELS), FEW,
              st.sampled_from(["expire", "delete"])),  # its index entries stay
    # a string where the object or an index key goes: the n-th key of the prefix
    st.tuples(st.just("plant"), st.sampled_from(MODELS), FEW, st.integers(-1, 12)),
)


def _outcome(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return ("ok", fn(*args, **kwargs))
    except Exception as e:  # compared between the two paths
        return ("error", type(e).__name__, str(e))


def _same(a: Any, b: Any) -> bool:
    """Outcomes compared: loaded objects by their fields (NaN equal to NaN)."""
    if attrs.has(type(a)) and type(a) is type(b):
        return repr(attrs.astuple(a)) == repr(attrs.astuple(b))
    if isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b):
        return all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b) or repr(a) == repr(b)


def _dump(r: redis.Redis) -> dict[bytes, tuple[Any, ...]]:
    """Every key: its type, its value, its expiry (ms left, to compare within 2 s)."""
    out: dict[bytes, tuple[Any, ...]] = {}
    read = {
        b"string": r.get,
        b"hash": r.hgetall,
        b"set": lambda k: sorted(r.smembers(k)),
        b"zset": lambda k: r.zrange(k, 0, -1, withscores=True),
        b"list": lambda k: r.lrange(k, 0, -1),
    }
    for k in sorted(r.scan_iter(count=1000)):
        kind = r.type(k)
        out[k] = (kind, read[kind](k), r.pttl(k))
    return out


def _same_value(key: bytes, a: Any, b: Any) -> bool:
    """Equal, but for the times of the expiry index (absolute ms: within 2 s)."""
    if not key.endswith(b"%idx:exp") or not isinstance(a, list) or not isinstance(b, list):
        return bool(a == b)
    return len(a) == len(b) and all(
        m == m2 and abs(t - t2) <= 2000 for (m, t), (m2, t2) in zip(a, b, strict=True))


def _same_dump(a: dict[bytes, tuple[Any, ...]], b: dict[bytes, tuple[Any, ...]]) -> bool:
    """The same keys, types and values; expiries within 2 s (the two sides' saves are
    some milliseconds apart)."""
    if a.keys() != b.keys():
        return False
    for k, (kind, value, ttl) in a.items():
        kind2, value2, ttl2 = b[k]
        if kind != kind2 or not _same_value(k, value, value2) or (ttl < 0) != (ttl2 < 0) or (
                ttl < 0 and ttl != ttl2) or abs(ttl - ttl2) > 2000:
            return False
    return True


def _snapshot(side: Side, obj: Any) -> Any:
    """What ``obj`` remembers: its snapshot (state, prints, key, and whether it names
    this side's client) and its stale fields."""
    found = _hash._SNAPSHOTS.get(id(obj))
    snap = None
    if found is not None and found[0]() is obj:
        where = found[4]() if found[4] is not None else None
        snap = (found[1], found[2], found[3], where is side.own)
    return snap, _hash.stale_fields(obj)


def _saves(side: Side, obj: Any, ttl: Any, force: bool) -> Any:
    kwargs: dict[str, Any] = {"force": force}
    if ttl is not DEFAULT:
        kwargs["ttl"] = ttl
    side.kept.append(obj)
    return _outcome(side.store.save, obj, **kwargs)


def _raw(side: Side, fn: Any) -> None:
    with contextlib.suppress(redis.ResponseError):  # a planted key of another type: the
        fn(side.raw)  # same on both sides


def _step(side: Side, step: tuple[Any, ...]) -> Any:
    """Run ``step`` on one side; its outcome (None for raw writes)."""
    what = step[0]
    if what == "save":
        return _saves(side, attrs.evolve(step[1]), step[2], step[3])
    if what == "load":
        _, model, id_, slot = step
        got = _outcome(side.store.get, model, id_)
        if got[0] == "ok" and got[1] is not None:
            side.slots[slot] = got[1]
            side.kept.append(got[1])
        return got
    if what == "change":
        _, slot, field, value = step
        obj = side.slots.get(slot)
        if obj is None or not hasattr(obj, field):
            return None
        return _outcome(setattr, obj, field, value)  # a validator may refuse it
    if what == "resave":
        _, slot, ttl, force = step
        obj = side.slots.get(slot)
        return None if obj is None else _saves(side, obj, ttl, force)
    spec = spec_of(step[1] if what != "unlisted" else type(step[1]))
    if what == "raw":
        _, _, id_, field, value = step
        _raw(side, lambda r: r.hset(spec.key_for(id_), field, value))
    elif what == "unlisted":
        obj = step[1]
        try:
            pairs, _ = layout_of(spec).encode(obj)
            key = spec.key_for(obj.id)
        except (redmodel.RedmodelError, UnicodeEncodeError):
            return None  # no such stored object: nothing planted
        _raw(side, lambda r: r.hset(key, mapping=dict(zip(pairs[::2], pairs[1::2],
                                                          strict=True))))
    elif what == "gone":
        _, _, id_, how = step
        key = spec.key_for(id_)
        _raw(side, (lambda r: r.pexpire(key, 1)) if how == "expire" else
             (lambda r: r.delete(key)))
    else:
        _, _, id_, n = step
        keys = sorted(k for k in side.raw.keys(f"{spec.prefix}:*")
                      if not k.endswith(b"%schema"))
        key = spec.key_for(id_) if n < 0 or not keys else keys[n % len(keys)]
        _raw(side, lambda r: (r.delete(key), r.set(key, b"planted")))
    return None


def _qualifies(step: tuple[Any, ...], side: Side) -> bool:
    """A whole save of a model that takes the single call."""
    if step[0] == "save":
        return type(step[1]) in SINGLE
    obj = side.slots.get(step[1]) if step[0] == "resave" else None
    return obj is not None and type(obj) in SINGLE and step[3]  # forced: whole


def _run(pair: tuple[Side, Side], steps: list[tuple[Any, ...]]) -> None:
    fast, slow = pair
    for side in pair:
        side.raw.flushdb()
        side.slots.clear()
        side.kept.clear()
    for step in steps:
        f, s = fast.recorder, slow.recorder
        f.sent.clear()
        s.sent.clear()
        plans = f.plans
        single = _qualifies(step, fast)
        got = _step(fast, step)
        want = _step(slow, step)
        if step[0] == "gone":
            time.sleep(0.003)  # both expired
        assert _same(got, want), (step[0], got, want)
        assert f.sent == s.sent  # the same batches (flags too), in the same order
        if single and got[0] == "ok" and len(f.sent) == 1:
            assert f.plans == plans  # written at once: no plan ran
        assert _same_dump(_dump(fast.raw), _dump(slow.raw))
        assert len(fast.kept) == len(slow.kept)
        for a, b in zip(fast.kept, slow.kept, strict=True):
            assert repr(_snapshot(fast, a)) == repr(_snapshot(slow, b))


UNIQUE_TAKEN = [("save", Hat("red", 1.0, code="c1", id="a"), None, False),
                ("save", Hat("blue", 2.0, code="c1", id="x:y"), None, False)]
STALE_THEN_FORCED = [("save", Hat("red", 1.0, id="a"), DEFAULT, False),
                     ("raw", Hat, "a", "zz", b"7"), ("load", Hat, "a", 0),
                     ("change", 0, "color", "blue"), ("resave", 0, None, True)]
UNLISTED = [("unlisted", Hat("red", 1.0, code="c1", id="a")),
            ("save", Hat("blue", -0.0, code="c1", id="a"), 100, False)]
UNHELD = [("save", Hat("red", 1.0, code="c1", id="a"), None, False),
          ("raw", Hat, "a", "code", b"c2"),
          ("save", Hat("red", 1.0, code="c1", id="x:y"), None, False)]


@settings(max_examples=scaled(300))
@given(steps=st.lists(STEP, min_size=1, max_size=8))
@example(steps=UNIQUE_TAKEN)
@example(steps=STALE_THEN_FORCED)
@example(steps=UNLISTED)
@example(steps=UNHELD)
@example(steps=[("save", Tag("t", size=2**70, id="a"), DEFAULT, False),
                ("save", Tag("u", id="a"), None, False),
                ("plant", Tag, "a", 1), ("save", Tag("v", id="a"), 100, False)])
@example(steps=[("save", Hat("red", float("nan"), id="a"), None, False),
                ("save", Hat("red", 1.0, id="a"), None, False),
                ("gone", Hat, "a", "expire"), ("save", Hat("blue", 2.0, id="a"), None,
                                               False)])
def test_an_indexed_whole_save_sends_and_answers_what_the_plan_does(
        pair: tuple[Side, Side], steps: list[tuple[Any, ...]]) -> None:
    _run(pair, steps)


def test_a_plain_success_runs_no_plan_and_a_refusal_runs_the_plans_rest(
        pair: tuple[Side, Side]) -> None:
    """The single path itself: a first save of a new object is one batch and no plan;
    a unique value taken is the plan's rest (after the single send), whose refusal it
    raises; the object keeps the snapshot of its last save."""
    fast, _ = pair
    rec = fast.recorder
    hat = Hat("red", 1.0, code="c1", id="a")
    assert fast.store.save(hat) == "isc:a"
    assert (len(rec.sent), rec.plans) == (1, 0)
    assert _hash.recall(hat) == {b"color": b"red", b"price": b"1.0", b"count": b"0",
                                 b"code": b"c1"}
    rec.sent.clear()
    with pytest.raises(redmodel.UniqueViolationError, match="isc:b"):
        fast.store.save(Hat("blue", 2.0, code="c1", id="b"))
    assert rec.plans == 1 and len(rec.sent) >= 1
    assert fast.raw.exists("isc:b") == 0


# ---- faults on the single send ----------------------------------------------------------


def _fault_store(kind: str, proxy: FaultProxy, once: bool) -> Any:
    options = client_options(proxy)
    if kind == "sync":
        return redmodel.Store(redis.Redis(**options), exactly_once=once, resend=FAST_RESEND)
    astore = redmodel.AsyncStore(redis.asyncio.Redis(**options), exactly_once=once,
                                 resend=FAST_RESEND)
    return AsyncFacade(astore, redis.Redis(**options))


def _faulted_save(store: Any, proxy: FaultProxy, fault: str, hat: Hat, ttl: Any
                  ) -> tuple[Any, ...]:
    arm_fault(proxy, fault, marked(f"isc:{hat.id}"))
    kwargs = {} if ttl is DEFAULT else {"ttl": ttl}
    try:
        return ("ok", store.save(hat, **kwargs))
    except Exception as e:  # what the caller is told
        return ("error", type(e).__name__)


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("once", [False, True])
@pytest.mark.parametrize("fault", ["lose", "drop", "stall"])
@pytest.mark.parametrize("ttl", [DEFAULT, 100])
def test_a_fault_on_the_single_send_is_applied_once_or_not_and_told_as_the_plan(
        proxy: FaultProxy, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch,
        kind: str, once: bool, fault: str, ttl: Any) -> None:
    store = _fault_store(kind, proxy, once)
    try:
        store.save(Hat("warm", 0.0, id="warm"))  # registry checked, script loaded
        outcomes = []
        for path, id_ in (("single", "f1"), ("plan", "f2")):
            if path == "plan":
                monkeypatch.setattr(_single, "save", _plan_only)
            hat = Hat("red", 1.5, count=2**40, code=f"u{id_}", id=id_)
            fired = len(proxy.events)
            got = _faulted_save(store, proxy, fault, hat, ttl)
            proxy.clear()
            assert len(proxy.events) > fired  # the fault hit this save's send
            assert proxy.quiet()  # a stalled copy has landed, or never will
            stored = redis_client.hgetall(f"isc:{id_}")
            if got[0] == "ok":  # applied, and told so
                assert got[1] == f"isc:{id_}"
                assert stored == {b"color": b"red", b"price": b"1.5",
                                  b"count": str(2**40).encode(), b"code": f"u{id_}".encode()}
            elif got[1] != "OutcomeUnknownError":  # a plain error: not applied
                assert stored == {}, got
            outcomes.append(got[:2] if got[0] == "error" else ("ok",))
            monkeypatch.undo()
        if fault != "stall":  # (a stalled copy's fate is timing's: 1.5 s against the
            # 1 s timeout and the resend's deadline; either outcome must be true, above)
            assert outcomes[0] == outcomes[1]  # told as the plan tells it
        assert store.verify(Hat) == []  # entries and objects agree: applied whole or not
        assert store.save(Hat("blue", 2.0, id="f1")) == "isc:f1"  # and it goes on
    finally:
        monkeypatch.undo()
        store.close()


# ---- every shell ------------------------------------------------------------------------


@redmodel.model(prefix="isf", buckets=3)  # a cluster needs buckets; no unique: no claims
@attrs.define
class Cap:
    color: str = redmodel.field(index=True)
    price: float = redmodel.field(index="range")
    note: str | None = None
    id: str = redmodel.key_field(generated=False)


def test_indexed_whole_saves_keep_their_index_on_every_shell(any_store: Any) -> None:
    """Through every shell (sync, asyncio, a cluster, an asyncio cluster) the whole saves
    of a bucketed indexed model, after the first that registers it, take the single call:
    new objects, one refused before sending, one whose indexed values changed (its old
    entries go: the plan's rest after a STORED answer), a TTL, a forced save of a loaded
    object; the index agrees with the objects."""
    store = any_store
    cap = Cap("red", 1.5, note="é", id="s:{1}*%")
    assert store.save(cap) == spec_of(Cap).key_for(cap.id)  # registers the model
    with pytest.raises(redmodel.ValidationError, match="surrogate"):  # before any send
        store.save(Cap("red", 1.5, note="\ud800", id="v"))
    key = store.save(Cap("blue", -0.0, id="t"))
    assert store.save(Cap("green", 1e300, note="", id="t"), ttl=100) == key
    assert store.find(Cap, color="blue").ids() == []
    assert store.find(Cap, color="green").ids() == ["t"]
    assert 0 < store.client.pttl(key) <= 100_000
    loaded = store.get(Cap, "t")
    assert loaded == Cap("green", 1e300, note="", id="t")
    loaded.color = "white"
    assert store.save(loaded, force=True) == key
    assert store.find(Cap, color="white").ids() == ["t"]
    assert store.find(Cap, price=redmodel.between(1.0, 2.0)).ids() == [cap.id]
    assert store.verify(Cap) == []

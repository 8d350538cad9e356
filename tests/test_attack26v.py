"""Attack 26V: the registry record's version (a query compares one field) and the leaner
index write scripts (save_many reads records and expiry scores once per call, adds an
absent object's id without asking its page, the first write as a type check).

Findings (each test asserts the documented behaviour and fails today):
- F1: a save_many that gives each of 8+ stored ids two values (or one id 9+ values),
  changing an indexed field, raises ConflictError ("other clients wrote it between each
  of 8 tries") with no other client at all.
- F2: that ConflictError leaves the objects after the conflicted one (never written) out
  of `.not_written` and `.keys`: the error does not account for every object.
- F3: a save_many object refused for a wrong-typed key, whose id an earlier object of the
  call wrote, is in neither `.written`'s count nor `.not_written` (same cause as F2).
"""

from __future__ import annotations

import asyncio
from typing import Any

import attrs
import pytest

import redmodel
from redmodel._indexes._specs import entry_key
from redmodel._models._specs import spec_of
from tests.index_helpers import all_ids, flush, plant


@redmodel.model(prefix="av")
@attrs.define
class Av:
    color: str = redmodel.field(index=True)
    price: float = redmodel.field(index="range")
    id: str = redmodel.key_field()


ROOT = "av:%idx:"
SPEC = spec_of(Av)


def ekey(field: str, value: str) -> str:
    """An equality entry key (as tests/test_index_fewer.py names one)."""
    text = SPEC.indexes.fields[field].text(value)  # type: ignore[union-attr]
    return str(entry_key(ROOT, ":", f"e\x1f{field}\x1f{text}", False))


def twice(n: int) -> list[Av]:
    """Each of n stored (red) ids saved blue, then red again, in one call."""
    return ([Av("blue", 1.0, id=f"o{k}") for k in range(n)]
            + [Av("red", 2.0, id=f"o{k}") for k in range(n)])


# F1: save_many of stored ids each given twice (an indexed value changed) raises
# ConflictError with no other client: the retries of one call run out on its own objects
@pytest.mark.parametrize("n", [8, 12])
def test_f1_save_many_of_repeated_stored_ids_needs_no_other_client(
        store: redmodel.Store, n: int) -> None:
    """docs/queries.md, "How entries stay right": save_many "does for each object, in
    order, exactly what `index_write.lua` does for it alone"; a blind save that changes an
    indexed value costs "one more round trip ... it counts among the same 8 tries before
    `ConflictError`", which docs/store.md and the error itself attribute to "other
    clients wrote it between each of 8 tries". Saving the same objects one by one with
    `save` succeeds; nothing else writes here."""
    client = store.client
    flush(client)
    store.save_many([Av("red", 0.0, id=f"o{k}") for k in range(n)])
    store.save_many(twice(n))                              # ConflictError today (n >= 8)
    got = store.get_many(Av, [f"o{k}" for k in range(n)])
    assert [(o.color, o.price) for o in got] == [("red", 2.0)] * n   # the last value wins
    assert sorted(store.find(Av, color="red").ids()) == sorted(f"o{k}" for k in range(n))
    assert store.find(Av, color="blue").count() == 0
    assert len(all_ids(client, ROOT)) == store.find(Av).count() == n
    assert store.verify(Av) == []



@pytest.mark.parametrize("stored", [False, True])
def test_f1_one_id_given_many_values_in_one_save_many(store: redmodel.Store,
                                                      stored: bool) -> None:
    """The smallest form: one id, its color alternating, 9 times (stored before) or 30
    times (new) in one call: ConflictError today, with no other client."""
    flush(store.client)
    if stored:
        store.save(Av("c", 0.0, id="o"))
    times = 9 if stored else 30
    assert store.save_many([Av(f"v{j % 2}", float(j), id="o")
                            for j in range(times)]) == times
    last = store.get(Av, "o")
    assert last is not None and (last.color, last.price) == (f"v{(times - 1) % 2}",
                                                             float(times - 1))
    assert store.find(Av, color=last.color).ids() == ["o"]
    assert store.verify(Av) == []

def test_f1_async_save_many_of_repeated_stored_ids(store: redmodel.Store,
                                                   redis_server: Any) -> None:
    flush(store.client)
    store.save_many([Av("red", 0.0, id=f"o{k}") for k in range(8)])

    async def run() -> int:
        astore = redmodel.AsyncStore.from_url(redis_server.url)
        try:
            return await astore.save_many(twice(8))         # ConflictError today
        finally:
            await astore.client.aclose()

    assert asyncio.run(run()) == 16
    assert store.verify(Av) == []


# F2: a ConflictError that stops save_many leaves the objects after the conflicted one
# (never sent again, never written) out of .not_written and .keys
def test_f2_a_conflict_error_accounts_for_every_object_of_the_call(
        store: redmodel.Store) -> None:
    """docs/store.md, "Atomicity and failures": an object that stops save_many "stops the
    call after its chunk: the error says which objects were written and which not, and
    carries their keys (`.written`, `.not_written`); ... Every error that stops either
    call once its first chunk was sent carries both". The call below (F1's trigger: 80
    objects, one chunk) raises ConflictError at av:o23's second object today with 63
    written and `.not_written == ()`: the 16 objects after it, unwritten (their stored
    values are the first objects'), are in no list."""
    client = store.client
    flush(client)
    n = 40
    store.save_many([Av("red", 0.0, id=f"o{k}") for k in range(n)])
    objs = twice(n)
    try:
        store.save_many(objs)
    except redmodel.ConflictError as err:                  # (F1 makes it happen at all)
        written = list(err.written or [])
        not_written = list(err.not_written or [])
        unknown = list(err.keys or [])
        # every object of the call is accounted for: written, not written, or (the
        # conflicted one, nothing of it written) named by the error
        extra = [k for k in unknown if k not in not_written]
        assert len(written) + len(not_written) + len(extra) == len(objs), (
            len(written), not_written, unknown)
        stored = {o.id: (o.color, o.price) for o in store.get_many(
            Av, [f"o{k}" for k in range(n)])}
        for key in not_written:                            # not written: its value is
            ident = key.removeprefix("av:")               # the first object's
            assert stored[ident] == ("blue", 1.0), key
    assert store.verify(Av) == []



# F3: an object refused (a wrong-typed key) whose id an earlier object of the same call
# wrote is in no list: "of this save_many's 3 objects 2 were written and 0 were not"
@pytest.mark.parametrize("kind", ["string", "zset"])
def test_f3_a_refused_object_whose_id_was_written_earlier_is_not_written(
        store: redmodel.Store, kind: str) -> None:
    """docs/store.md, "Atomicity and failures": "An object the server refuses (a unique
    value taken, a wrong-typed key ...) stops the call after its chunk: the error says
    which objects were written and which not, and carries their keys (`.written`,
    `.not_written`)". With a distinct id the refused object is in `.not_written`; when
    an earlier object of the call has its id, it vanishes: the caller sees av:a written
    while av:a holds the first value, not the one it passed last. (The same cause hides
    F2's objects: redmodel/_plans/_objects.py `_batch_error` computes `.not_written` as the
    call's keys not in `.written`, by key, not by object.)"""
    client = store.client
    flush(client)
    store.save(Av("c", 0.0, id="a"))
    bad = Av("bad", 2.0, id="a")
    planted = ekey("color", "bad")
    plant(client, planted, kind)
    with pytest.raises(redmodel.ServerError, match="WRONGTYPE") as err:
        store.save_many([Av("good", 1.0, id="a"), bad, Av("z", 3.0, id="b")])
    assert planted in str(err.value)
    got = store.get(Av, "a")
    assert got is not None and got.color == "good"        # the refused object: not written
    assert list(err.value.written or []) == ["av:a", "av:b"]
    assert list(err.value.not_written or []) == ["av:a"]   # () today
    assert "2 were written" in str(err.value) and "1 were not" in str(err.value)

# ---- sound (kept: coverage the suite lacks) -----------------------------------------------
# The registry check of every query form a store that read the record `ready` runs after
# the documented hand change (HDEL the version, then the state): test_registry_version
# covers count/ids of an equality index; these are the range index, order_by, pages and
# cursors (sync and async, the change made between two pages).

FORMS: dict[str, Any] = {
    "count": lambda s: s.find(Av, price=redmodel.between(0, 100)).count(),
    "exists": lambda s: s.find(Av, price=redmodel.between(0, 100)).exists(),
    "first": lambda s: s.find(Av, price=redmodel.between(0, 100)).first(),
    "order": lambda s: s.find(Av).order_by("price").limit(1).ids(),
    "order_eq": lambda s: s.find(Av, color="red").order_by("-price").ids(),
}


def _hand_change(client: Any) -> None:
    client.hdel("av:%schema", "version")       # docs/migrations.md: "also delete version"
    client.hset("av:%schema", "index:price", "building")
    client.hset("av:o99", mapping={"color": "red", "price": "1.5"})  # the index misses it


def test_sound_every_query_form_sees_the_documented_hand_change(
        store: redmodel.Store, redis_server: Any) -> None:
    client = store.client
    for form, ask in FORMS.items():
        flush(client)
        a = redmodel.Store(client)
        a.save_many([Av("red", float(i), id=f"o{i}") for i in range(6)])
        ask(a)                                             # read the record: ready
        _hand_change(client)
        with pytest.raises(redmodel.IndexNotReadyError):
            ask(a)
            pytest.fail(form)
    for form in ("pages", "after", "apages"):
        flush(client)
        a = redmodel.Store(client)
        a.save_many([Av("red", float(i), id=f"o{i}") for i in range(6)])
        q = a.find(Av, price=redmodel.between(0, 100)).order_by("price")
        with pytest.raises(redmodel.IndexNotReadyError):
            if form == "pages":
                for page in q.pages(2):
                    assert page
                    _hand_change(client)
            elif form == "after":
                p = q.page(2)
                _hand_change(client)
                while p.cursor:
                    p = q.after(p.cursor).page(2)
            else:
                async def run() -> None:
                    b = redmodel.AsyncStore.from_url(redis_server.url)
                    try:
                        aq = b.find(Av, price=redmodel.between(0, 100)).order_by("price")
                        async for page in aq.apages(2):
                            assert page
                            _hand_change(client)
                    finally:
                        await b.client.aclose()
                asyncio.run(run())
            pytest.fail(form)

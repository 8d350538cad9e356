"""Shortcuts of the index write scripts (issue 17, items 1-2) and the guarantees they
could break.

- index_write_many.lua's arguments: what the objects of a call share (mode, root,
  delimiter, object prefix, ttl, changed, the rec/all/exp keys) travels once, in a header
  that holds until the next one. Could break: an object written with another object's ttl
  or mode (a header that changes inside a call); a malformed call writing something.
- index_write.lua reads the id's expiry score (ZSCORE: the expiry set's type check) instead
  of asking TYPE, and skips the ZREM of a score that is not there. Could break: a
  wrong-typed expiry set (or any other key) refused before the first write.
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest

import redmodel
from redmodel._indexes._writes import MANY, WRITE, Write, _many
from redmodel._layouts._pick import layout_of
from redmodel._models._specs import spec_of
from tests.index_helpers import dump, flush, plant


@redmodel.model(prefix="hdr")
@attrs.define
class Cap:
    color: str = redmodel.field(index=True)
    price: float = redmodel.field(index="range")
    id: str = redmodel.key_field()


def _write(mode: str, eid: str, color: str = "red", price: str = "1.5", ttl: str = "") -> Write:
    spec = spec_of(Cap)
    layout: Any = layout_of(spec)
    key = spec.key_of_text(eid)
    entries = layout.entries(key, {"color": color, "price": float(price)})
    if mode == "delete":  # declaring the entries it had (color, price), assuming the
        # stored fields they come from (an object without a record: its entries derive)
        w: Write = layout.write(key, "delete", entries=(), olds=entries,
                                assume={b"color": color.encode(), b"price": price.encode()})
        w.declare_lines(entries)
        return w
    return layout.write(key, "save", ttl, "*", entries,  # type: ignore[no-any-return]
                        [2, "color", color, "price", price])


def _run(client: Any, cmd: tuple[Any, ...]) -> Any:
    script = MANY if cmd[1] == MANY.sha else WRITE
    return client.execute_command("EVAL", script.source, *cmd[2:])


def _writes() -> list[Write]:
    # the header changes four times: ttl, then mode, then ttl again
    ws = [_write("save", "a", ttl="60000"), _write("save", "b", ttl="60000"),
          _write("save", "c", "blue", "-0.0"), _write("delete", "old", "red", "3"),
          _write("save", "d", "green", "1e300", ttl="persist"),
          _write("save", "a", "blue", "2")]
    ws[-1].declare_lines(ws[0].args[7].split("\n"))  # what a has before its second save
    return ws


def test_a_header_that_changes_inside_a_call_writes_what_one_at_a_time_writes(
        store: redmodel.Store) -> None:
    client = store.client
    states, replies = [], []
    for batched in (True, False):
        flush(client)
        _run(client, _write("save", "old", "red", "3").command())
        ws = _writes()
        if batched:
            replies.append(_run(client, _many(ws)))
        else:
            replies.append([_run(client, w.command()) for w in ws])
        state = dump(client)
        kind, members, _ = state.pop(b"hdr:%idx:exp")  # expiry times: the clock's
        assert kind == "zset" and all(float(at) > 0 for _, at in members)
        states.append({**state, b"exp": sorted(m for m, _ in members)})
    assert replies[0] == replies[1] == [1, 1, 1, 1, 1, 1]
    assert states[0] == states[1]
    assert states[0][b"exp"] == [b"a", b"b"]  # a keeps its expiry: a save without ttl
    assert states[0][b"exp"] == [b"a", b"b"]  # a keeps its expiry: a save without ttl
    assert client.pttl("hdr:b") > 0 and client.pttl("hdr:c") == -1
    assert client.pttl("hdr:d") == -1 and client.exists("hdr:old") == 0


@pytest.mark.parametrize("cut", ["no header", "cut header", "cut object", "left over"])
def test_a_malformed_call_is_refused_with_nothing_written(store: redmodel.Store,
                                                          cut: str) -> None:
    client = store.client
    flush(client)
    cmd = list(_many([_write("save", "a"), _write("save", "b")]))
    nkeys = cmd[2]
    args = cmd[3 + nkeys:]
    assert args[1] == "h"
    if cut == "no header":
        args = [args[0], *args[11:]]  # the objects without the header before them
    elif cut == "cut header":
        args = args[:6]
    elif cut == "cut object":
        args = args[:-1]  # the last object's last argument missing
    else:
        args = [*args, "x"]
    reply = _run(client, (*cmd[:3 + nkeys], *args))
    assert reply[0] in (b"BADARG", "BADARG")
    assert dump(client) == {}


# every key a save touches, planted with a wrong type: the save (one, or save_many; of a new
# object, or of one that exists with an expiry) is refused naming it, and nothing is written
KINDS = {"obj": ("hdr:x", "list"), "rec": ("hdr:%idx:rec", "string"),
         "all": ("hdr:%idx:all", "set"), "exp": ("hdr:%idx:exp", "hash"),
         "eq": ("hdr:%idx:eq:color:red", "zset"), "rng": ("hdr:%idx:rng:price", "set"),
         "ids": ("hdr:%idx:ids", "string"), "idn": ("hdr:%idx:idn", "list"),
         "page": ("hdr:%idx:ids:", "hash")}
# the all-ids pages are written only by the save of a new object: an existing one (its
# record in a converted bucket) is among them already, and its save sends no page command
ADDS_ONLY = ("ids", "idn", "page")


@pytest.mark.parametrize("how", ["save", "save_many"])
@pytest.mark.parametrize(("kind", "existing"),
                         [(k, e) for k in sorted(KINDS) for e in (False, True)
                          if not (k == "obj" and e)  # an existing object's key is a hash
                          and not (k in ADDS_ONLY and e)])
def test_a_planted_wrong_typed_key_refuses_the_save_with_nothing_written(
        store: redmodel.Store, kind: str, existing: bool, how: str) -> None:
    client = store.client
    flush(client)
    key, planted = KINDS[kind]
    if existing:
        store.save(Cap(color="blue", price=2.0, id="x"), ttl=60)
    plant(client, key, planted)
    before = dump(client)
    cap = Cap(color="red", price=1.5, id="x")
    with pytest.raises(redmodel.ServerError) as info:
        if how == "save":
            store.save(cap)
        else:
            store.save_many([cap])
    assert key in str(info.value)
    assert dump(client) == before


def test_an_object_cut_inside_its_assumption_never_reads_the_next_one(
        store: redmodel.Store) -> None:
    """A delete whose own arguments end inside its assumption (two of its three leading
    values) is refused, not completed with the next object's arguments (attack 27aa's
    note on the in-place ARGV reading of session 27)."""
    client = store.client
    flush(client)
    cmd = list(_many([_write("delete", "old", "red", "3"), _write("save", "b")]))
    nkeys = cmd[2]
    args = cmd[3 + nkeys:]
    assert args[1] == "h"
    count = args[12]  # the first object's: its id, entries, then its assumption
    # its assumption cut to two values: '*' (any stored fields) and its 'full' flag
    cut = [*args[:12], 4, *args[13:15], "*", args[16], *args[13 + count:]]
    reply = _run(client, (*cmd[:3 + nkeys], *cut))
    assert reply[0][0] in (b"BADARG", "BADARG")  # that object refused, nothing of it
    got = dump(client)
    flush(client)
    _run(client, _write("save", "b").command())
    assert got == dump(client)  # the next object written as on its own

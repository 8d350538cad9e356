"""KEYS audit (issue 18, item 2): every key a Lua script of redmodel touches is one it
declared in KEYS, as Redis' scripting contract requires (proxies and servers that route or
check by KEYS rely on it).

A workload drives every script in ``redmodel/lua`` through the public API while a raw
MONITOR connection on every primary records what the server really executes: each
EVALSHA/EVAL with its declared keys, then the commands the script runs (MONITOR lines of
the ``lua`` client, which follow their script's line). The server itself says which
arguments of each such command are keys (``COMMAND GETKEYS``), and each must be among the
script's KEYS. The audit also fails when a script in ``redmodel/lua`` was never run, so a
new script must be added to the workload.
"""

from __future__ import annotations

import hashlib
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from importlib import resources
from typing import Any

import attrs
import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from redis.cluster import RedisCluster

import redmodel
from redmodel._models._specs import spec_of
from redmodel._plan import SCRIPTS_BY_SHA, LuaScript
from redmodel.cli._import import _Writer
from redmodel.cli._lines import TypedItem
from redmodel.containers import Queue, Set, SortedSet, WindowCounter
from redmodel.migrations import Migrations, rewrite
from redmodel.testing import ClusterFaultProxy, FaultProxy, RedisClusterServer, RedisServer
from tests.keys import use_keys

FERNET_OLD, FERNET_NEW = (redmodel.codecs.FernetTransform.generate_key() for _ in range(2))
INDEX_KEY, NEW_INDEX_KEY = (redmodel.generate_index_key() for _ in range(2))
_INCLUDE = "--! include "
_SCRIPT_COMMANDS = {b"EVAL", b"EVALSHA", b"EVAL_RO", b"EVALSHA_RO"}


# ---- the scripts redmodel has ------------------------------------------------------------


def lua_files() -> dict[str, str]:
    folder = resources.files("redmodel.lua")
    return {p.name[:-4]: p.read_text("utf-8") for p in folder.iterdir()
            if p.name.endswith(".lua")}


def runnable_scripts() -> set[str]:
    """Every script in redmodel/lua but the include-only ones (named by an include line)
    and the memo wrapper's halves (composed around a script by memo_variant: its runs
    are the scripts' "+memo" variants)."""
    files = lua_files()
    included = {line[len(_INCLUDE):].strip() for text in files.values()
                for line in text.splitlines() if line.startswith(_INCLUDE)}
    return set(files) - included - {"memo_head", "memo_tail"}


def test_include_only_files_are_the_shared_pieces() -> None:
    files = lua_files()
    assert set(files) - runnable_scripts() == {
        "acl_lib", "clock", "consume_lib", "counter_lib", "flat_lib", "ids_lib", "index_acl",
        "index_lib", "guard_head", "memo_head", "memo_tail", "once_head", "once_tail",
        "parts_lib", "shift_lib", "types_lib"}


# ---- MONITOR, read raw -------------------------------------------------------------------

_ESCAPES = {ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t", ord("a"): b"\a",
            ord("b"): b"\b", ord("\\"): b"\\", ord('"'): b'"'}


_ARG = re.compile(rb'"((?:[^"\\]|\\.)*)"', re.DOTALL)  # one quoted argument
_ESCAPE = re.compile(rb"\\(x[0-9a-fA-F]{2}|.)", re.DOTALL)


def _unescaped(m: re.Match[bytes]) -> bytes:
    e = m.group(1)
    return bytes([int(e[1:], 16)]) if len(e) == 3 else _ESCAPES[e[0]]


def parse_monitor_line(line: bytes) -> tuple[str, list[bytes]]:
    """(client, arguments) of one MONITOR line ``+ts [db client] "arg" "arg" ...``, each
    argument unquoted from sdscatrepr's form (\\n \\r \\t \\a \\b \\\\ \\" \\xHH)."""
    assert line.startswith(b"+"), line
    open_at, close_at = line.index(b"["), line.index(b"]")
    client = line[open_at + 1 : close_at].split(b" ", 1)[1].decode()
    rest = line[close_at + 1 :]
    quoted = _ARG.findall(rest)
    # every byte after the client is a quoted argument or a space between two
    assert len(rest) == sum(len(q) + 3 for q in quoted), (line, quoted)
    return client, [_ESCAPE.sub(_unescaped, q) if b"\\" in q else q for q in quoted]


def _sdscatrepr(arg: bytes) -> bytes:
    """The server's quoting of one MONITOR argument (sds.c, sdscatrepr)."""
    named = {ord("\\"): b"\\\\", ord('"'): b'\\"', ord("\n"): b"\\n", ord("\r"): b"\\r",
             ord("\t"): b"\\t", ord("\a"): b"\\a", ord("\b"): b"\\b"}
    return b'"' + b"".join(named.get(c) or (bytes([c]) if 0x20 <= c <= 0x7E
                                            else b"\\x%02x" % c) for c in arg) + b'"'


@given(st.lists(st.binary(max_size=40), min_size=1, max_size=6))
def test_monitor_lines_of_any_arguments_parse_back(args: list[bytes]) -> None:
    line = b"+1796028263.934 [0 127.0.0.1:5] " + b" ".join(_sdscatrepr(a) for a in args)
    assert parse_monitor_line(line) == ("127.0.0.1:5", args)


def test_monitor_lines_are_unquoted_exactly() -> None:
    line = (b'+1796028263.934 [0 lua] "SET" "k\\n1 \\"q\\"" "a\\x01\\xff\\\\b" "" '
            b'"sp ace"')
    assert parse_monitor_line(line) == ("lua", [b"SET", b'k\n1 "q"', b"a\x01\xff\\b", b"",
                                                b"sp ace"])
    client, args = parse_monitor_line(b'+1.0 [0 127.0.0.1:5] "EVALSHA" "ab" "0"')
    assert client == "127.0.0.1:5" and args == [b"EVALSHA", b"ab", b"0"]


class Monitor:
    """A raw MONITOR connection to one server; a thread keeps its lines."""

    def __init__(self, host: str, port: int) -> None:
        self.address = (host, port)
        self.sock = socket.create_connection((host, port))
        self.sock.sendall(b"MONITOR\r\n")
        self.buffer = b""
        while b"\r\n" not in self.buffer:
            self.buffer += self.sock.recv(65536)
        first, self.buffer = self.buffer.split(b"\r\n", 1)
        assert first == b"+OK", first
        self.lines: list[bytes] = []
        self.marker = b""
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while True:
            while b"\r\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\r\n", 1)
                self.lines.append(line)
                if self.marker and self.marker in line:
                    self.done.set()
            try:
                chunk = self.sock.recv(1 << 20)
            except OSError:
                return
            if not chunk:
                return
            self.buffer += chunk

    def finish(self) -> list[tuple[str, list[bytes]]]:
        """Every line up to now: an ECHO of a fresh marker ends the recording."""
        self.marker = b"keys-audit-end-" + uuid.uuid4().hex.encode()
        with redis.Redis(host=self.address[0], port=self.address[1]) as c:
            c.echo(self.marker)
        assert self.done.wait(10), "MONITOR did not see the end marker"
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes the reader (a close alone does not)
        self.thread.join(5)
        self.sock.close()
        lines = [parse_monitor_line(line) for line in self.lines]
        return [(client, args) for client, args in lines if args[:1] != [b"ECHO"]
                or args[1:] != [self.marker]]


# ---- the audit ---------------------------------------------------------------------------


def script_name(command: list[bytes]) -> str:
    name = command[0].upper()
    sha = (hashlib.sha1(command[1]).hexdigest() if name in (b"EVAL", b"EVAL_RO")
           else command[1].decode())
    found: LuaScript | None = SCRIPTS_BY_SHA.get(sha)
    return found.name if found is not None else f"<unknown script {sha}>"


def getkeys(address: tuple[str, int], commands: list[tuple[bytes, ...]]) -> list[Any]:
    """``COMMAND GETKEYS`` of each command, pipelined on a raw connection (no reply
    parsing of redis-py's in the way): a list of keys, or the error reply."""
    conn = redis.Connection(host=address[0], port=address[1], protocol=2)
    try:
        conn.send_packed_command(conn.pack_commands(
            [("COMMAND", "GETKEYS", *args) for args in commands]))
        out: list[Any] = []
        for _ in commands:
            try:
                out.append(conn.read_response())
            except redis.ResponseError as e:
                out.append(e)
        return out
    finally:
        conn.disconnect()


def is_declared_page(key: bytes, declared: set[bytes]) -> bool:
    """The one amendment of the rule (docs/design.md, "The all-ids index in pages"): a
    page of the all-ids index, ``<root>ids<d><bound>`` (redmodel/lua/ids_lib.lua), when the
    script declared that root's directory ``<root>ids``; the pages cannot be declared in
    advance, and they share the directory's slot and ACL pattern. Nothing else."""
    for dk in declared:
        if not dk.endswith(b"ids") or b"%idx" not in dk:
            continue
        root = dk[:-3]
        d = root[root.rfind(b"%idx") + 4 :]
        if d and key.startswith(dk + d):
            return True
    return False


def test_only_pages_under_a_declared_directory_pass_the_amendment() -> None:
    declared = {b"hat:{3}:%idx:ids", b"hat:{3}:%idx:rec"}
    assert is_declared_page(b"hat:{3}:%idx:ids:", declared)  # the first page (bound '')
    assert is_declared_page(b"hat:{3}:%idx:ids:a:b", declared)
    assert not is_declared_page(b"hat:{4}:%idx:ids:a", declared)  # another bucket's
    assert not is_declared_page(b"hat:{3}:%idx:idn", declared)  # the count: declared
    assert not is_declared_page(b"hat:{3}:%idx:idsx", declared)
    assert not is_declared_page(b"hat:{3}:%idx:eq:c:v", declared)
    assert not is_declared_page(b"hat:{3}:%idx:ids:a", {b"hat:{3}:%idx:rec"})


@attrs.define
class Audit:
    seen: set[str] = attrs.Factory(set)  # script names run ("x+once" for variants)
    violations: list[str] = attrs.Factory(list)
    commands: int = 0  # commands scripts ran, checked

    def check(self, address: tuple[str, int], lines: list[tuple[str, list[bytes]]]) -> None:
        """One server's MONITOR lines: each command a script ran against its KEYS."""
        runs: list[tuple[str, set[bytes], list[bytes]]] = []  # script, KEYS, a command
        current: tuple[str, set[bytes]] | None = None
        for client, args in lines:
            if client != "lua":
                current = None
                if args and args[0].upper() in _SCRIPT_COMMANDS:
                    name = script_name(args)
                    numkeys = int(args[2])
                    current = (name, set(args[3 : 3 + numkeys]))
                    self.seen.add(name)
                continue
            if current is None:
                self.violations.append(f"a script command with no script before it: {args!r}")
                continue
            runs.append((current[0], current[1], args))
        # a command with no arguments (TIME) has no keys; GETKEYS wants at least one
        distinct = list(dict.fromkeys(tuple(args) for _, _, args in runs if len(args) > 1))
        replies = getkeys(address, distinct)
        keys_of: dict[tuple[bytes, ...], list[bytes]] = {
            tuple(args): [] for _, _, args in runs if len(args) == 1}
        for args, reply in zip(distinct, replies, strict=True):
            if isinstance(reply, Exception):
                # a command without key arguments (anything else fails here)
                assert "no key arguments" in str(reply), (args, reply)
                keys_of[args] = []
            else:
                keys_of[args] = list(reply)
        self.commands += len(runs)
        for name, declared, args in runs:
            for key in keys_of[tuple(args)]:
                if key not in declared and not is_declared_page(key, declared):
                    command = b" ".join(a if len(a) < 60 else a[:57] + b"..." for a in args)
                    self.violations.append(f"{name}: touches undeclared key {key!r} in "
                                           f"{command!r}")


@pytest.fixture(autouse=True)
def crypto_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    use_keys(monkeypatch, fernet=[FERNET_OLD], index=[INDEX_KEY])


# ---- models ------------------------------------------------------------------------------


@attrs.define
class Street:
    line1: str
    line2: str | None = None


@attrs.define
class Address:
    street: Street
    city: str
    zips: list[int] = attrs.Factory(list)


@redmodel.model(prefix="ka_hat", hash_tag=True)
@attrs.define
class Hat:
    color: str
    quantity: int = 0
    price: float = 0.0
    note: str | None = None
    secret: str = redmodel.field(codec="json|fernet", default="")
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="ka_flat", layout="flat", hash_tag=True)
@attrs.define
class Flat:
    name: str
    address: Address
    count: int = 0
    ratio: float = 0.0
    tags: list[str] = attrs.Factory(list)
    scores: dict[str, int] = attrs.Factory(dict)
    secret: str = redmodel.field(codec="json|fernet", default="")
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="ka_blob", layout="blob", codec="json|fernet", hash_tag=True)
@attrs.define
class Blob:
    name: str
    tags: list[str] = attrs.Factory(list)
    id: str = redmodel.key_field(generated=False)


def indexed_model(prefix: str, buckets: int | None) -> type:
    @redmodel.model(prefix=prefix, buckets=buckets, unique=[("color", "size")])
    @attrs.define
    class Item:
        color: str = redmodel.field(index=True)
        size: int = redmodel.field(index="range", default=0)
        price: float = redmodel.field(index="range", default=0.0)
        tags: list[str] = redmodel.field(index=True, factory=list)
        stock: int = redmodel.field(index=True, default=0)
        sku: str | None = redmodel.field(unique=True, default=None)
        ssn: str | None = redmodel.field(codec="json|fernet", index="blind", unique=True,
                                         default=None)
        id: str = redmodel.key_field(generated=False)

    return Item


Indexed = indexed_model("ka_idx", None)  # one server only: its index keys share no slot
Bucketed = indexed_model("ka_bkt", 4)  # claims its unique values in their own buckets


# ---- the workload ------------------------------------------------------------------------


def layouts(store: redmodel.Store, client: Any) -> None:
    store.save(Hat("red", 5, 1.5, note="n", secret="s1", id="1"))
    store.save(Hat("red", 5, 1.5, id="1"))  # note gone: HDEL in hash_save
    store.save(Hat("blue", 1, id="2"), ttl=60)
    assert store.update(Hat, "1", quantity=7, note=None)
    assert not store.update(Hat, "nope", quantity=1)
    assert store.incr(Hat, "1", "quantity", 2) == 9
    store.incr_fields(Hat, "1", {"quantity": 1, "price": 0.5}, floor={"quantity": 0})
    assert store.expire(Hat, "1", 60) and store.persist(Hat, "1")
    assert store.get(Hat, "1") is not None
    store.delete(Hat, "2")

    # Regression (issue 18): the flat scripts touched the leaves their manifest names
    # without declaring them. Lists and dicts have leaves the client cannot name before it
    # reads the manifest: each call below needs the script to ask for them.
    address = Address(Street("l1", "l2"), "oslo", [1, 2, 3])
    store.save(Flat("f", address, 1, tags=["a", "b"], scores={"x:y": 1}, secret="s2",
                    id="1"))
    shrunk = Flat("f", Address(Street("l1"), "oslo", [1]), 1, id="1")
    store.save(shrunk)  # flat_save: the leaves that went away are deleted, and declared
    assert not any(k.endswith((":tags:0", ":zips:2", ":line2")) or "x%3Ay" in k
                   for k in scan_all(client, "ka_flat:{1}*"))
    store.save(Flat("g", address, tags=["x"], scores={"a": 2}, id="2"), ttl=60)
    assert store.get(Flat, "2") == Flat("g", address, tags=["x"], scores={"a": 2},
                                        id="2")  # flat_get
    assert store.get_many(Flat, ["1", "2", "none"])[0] == shrunk
    assert store.incr(Flat, "1", "count", 3) == 4
    assert store.incr(Flat, "1", "ratio", 0.25) == 0.25
    assert store.expire(Flat, "2", 60) and store.persist(Flat, "2")  # flat_expire
    assert store.delete(Flat, "2")  # flat_delete
    assert list(scan_all(client, "ka_flat:{2}*")) == []

    store.save(Blob("b", ["t"], id="1"))
    store.save(Hat("green", secret="s3", id="3"))
    store.save(Flat("h", address, secret="s4", id="3"))
    store.save(Blob("b3", id="3"))
    # `redmodel import` of blobs without expiry: SETs that refuse a key of another type
    writer = _Writer(store, 10)
    for i in "45":
        writer.add(TypedItem(Blob, Blob(f"b{i}", id=i), None), "Blob")
    writer.flush()  # blob_set_checked
    # a new Fernet key: rotation rewrites each value with a compare-and-set script
    redmodel.codecs.configure_fernet(keys=[FERNET_NEW, FERNET_OLD])
    assert store.rotate_keys(Hat) >= 1  # hash_cas_field
    assert store.rotate_keys(Flat) >= 1  # string_cas (a leaf)
    assert store.rotate_keys(Blob) >= 1  # string_cas (the blob)
    assert store.get(Blob, "3") is not None


def indexes(store: redmodel.Store, client: Any, model: type) -> None:
    m = model
    store.save(m("red", 1, 1.0, ["a"], sku="s1", ssn="111", id="1"))
    store.save(m("red", 2, 2.0, ["a", "b"], sku="s2", id="2"))
    store.save_many([m("blue", i, float(i), id=f"x{i}") for i in range(3, 12)])
    store.save(m("red", 1, 1.5, ["c"], sku="s1", ssn="111", id="1"))  # claims refreshed
    with pytest.raises(redmodel.UniqueViolationError):  # sku s2 taken: claims undone
        store.save(m("red", 1, 1.0, ["a"], sku="s2", ssn="111", id="1"))
    assert store.update(m, "2", color="green", size=2, sku="s9")  # releases s2 and (red, 2)
    assert store.incr(m, "2", "stock", 5) == 5
    store.incr_fields(m, "2", {"stock": 1, "price": 0.5})
    assert store.expire(m, "2", 60) and store.persist(m, "2")
    assert store.get_by(m, sku="s1") is not None
    assert store.get_by(m, ssn="111") is not None
    assert store.delete(m, "x11")

    # queries: equality, ranges, contains, sorting, paging with cursors, counts
    assert len(store.find(m, color="blue").all()) == 8
    assert [h.id for h in store.find(m, size=redmodel.between(3, 5)).order_by("size").all()
            ] == ["x3", "x4", "x5"]
    assert store.find(m, tags=redmodel.contains("a")).count() == 1
    assert store.find(m, redmodel.Q(color="blue") | redmodel.Q(color="red")).count() == 9
    assert store.find(m, ssn="111").first() is not None
    page = store.find(m, color="blue").order_by("-price").page(3)
    assert len(page.items) == 3 and page.cursor is not None
    more = store.find(m, color="blue").order_by("-price").after(page.cursor).page(3)
    assert len(more.items) == 3
    assert sum(len(p) for p in store.find(m).pages(4)) == 10
    assert store.find(m, price=redmodel.gt(4)).exists()
    assert store.count(m) == 10

    # expiry: an expired object's entries are swept (by a query and by sweep)
    store.save(m("gone", 1, id="t1"), ttl=0.05)
    store.save(m("gone", 2, id="t2"), ttl=0.05)
    time.sleep(0.1)
    assert store.find(m, color="gone").all() == []  # query answers X, sweep, ask again
    store.save(m("gone", 3, id="t3"), ttl=0.05)
    time.sleep(0.1)
    assert store.sweep(m) >= 1

    # damage for reindex to repair: a stray member in an index key, an object deleted
    # raw (its claims and entries left behind)
    red = next(scan_all(client, f"{spec_of(m).prefix}*%idx*eq*color*red"))
    client.sadd(red, "nobody")
    client.delete(spec_of(m).key_of_text("x3"))
    assert store.verify(m)  # reports, writes nothing
    store.reindex(m, progress=False)
    assert store.verify(m) == []
    # a new blind-index key: the entries under the old one are rewritten
    redmodel.configure_index_keys(keys=[NEW_INDEX_KEY, INDEX_KEY])
    assert store.rotate_index_key(m, progress=False) >= 1
    # back to the first key, the new one still configured: the entries are under it now
    # (a process without it is refused: docs/codecs.md, "Which keys the data is under")
    redmodel.configure_index_keys(keys=[INDEX_KEY, NEW_INDEX_KEY])

    @redmodel.transaction(store)
    def move(tx: Any, src: str, dst: str) -> None:
        a = tx.get_or_raise(m, src)
        tx.incr(m, src, "stock", 1)
        tx.save(attrs.evolve(a, id=dst, sku=None, ssn=None, color="moved"))
        tx.delete(m, "x4")

    if m is Indexed:
        move("x5", "x55")


def scan_all(client: Any, pattern: str) -> Iterator[str]:
    if isinstance(client, RedisCluster):
        keys = client.keys(pattern, target_nodes=RedisCluster.PRIMARIES)
    else:
        keys = client.keys(pattern)
    return iter(sorted(k.decode() for k in keys))


def containers(store: redmodel.Store, client: Any) -> None:
    q = Queue(store, "ka_jobs", int)
    q.push(1, 2, 3, 4)
    q.pop()
    s = Set(store, "ka_set", str)
    s.add("a", "b")
    z = SortedSet(store, "ka_z", str)
    z.add("a", 1)
    z.incr("a", 2)
    z.add_many({"b": 5.0, "c": 6.0, "d": 7.0})
    assert z.pop_min() == [("a", 3.0)]  # read, then the pop script (zset_pop)
    assert z.pop_max(2) == [("d", 7.0), ("c", 6.0)]
    WindowCounter(store, "ka_visits", window=60).incr("10.0.0.1")

    # reliable consumption: a dead consumer's items recovered, a restart taking back its
    # own, an undecodable item rejected, heartbeats, leaving
    from redmodel.containers._consumer import ConsumerKeys  # noqa: PLC0415

    keys = ConsumerKeys.of("ka_jobs")
    client.rpush(keys.in_flight("dead"), b"7")
    client.zadd(keys.consumers, {"dead": int(time.time() * 1000) - 60_000})
    assert q.recover() == 1
    client.rpush(keys.in_flight("w1"), b"8")
    client.zadd(keys.consumers, {"w1": int(time.time() * 1000) + 3_600_000})
    client.rpush("ka_jobs", b"not a number")
    got: list[int] = []
    with pytest.raises(redmodel.DecodeError):
        for item in q.consume(name="w1", idle_timeout=0.2, poll=0.1,
                              visibility_timeout=0.15):
            got.append(item)
            time.sleep(0.06)  # a heartbeat (every visibility_timeout / 3) meanwhile
    got += list(q.consume(name="w1", idle_timeout=0.2, poll=0.1))
    assert sorted(got) == [2, 3, 4, 7, 8]


def transactions(store: redmodel.Store) -> None:
    store.save(Hat("tx", 3, id="t"))
    store.save(Flat("t", Address(Street("l"), "c", [1, 2]), tags=["a"], id="t"))

    @redmodel.transaction(store)
    def reshape(tx: Any, flat_id: str) -> None:
        # nothing can be sent again after EXEC: each write reads the manifest first, and
        # the second declares the leaves the first one leaves
        f = tx.get_or_raise(Flat, flat_id)
        tx.save(attrs.evolve(f, tags=["x", "y", "z"]))
        tx.save(attrs.evolve(f, tags=[], scores={"k": 1}))
        tx.expire(Flat, flat_id, 60)

    reshape("t")
    assert store.get(Flat, "t") == Flat("t", Address(Street("l"), "c", [1, 2]),
                                        scores={"k": 1}, id="t")
    assert store.ttl(Flat, "t") is not None

    @redmodel.transaction(store)
    def buy(tx: Any, hat_id: str) -> None:
        hat = tx.get_or_raise(Hat, hat_id)
        tx.incr(Hat, hat_id, "quantity", -1)
        tx.update(Hat, hat_id, note="sold")
        tx.save(attrs.evolve(hat, color="sold"))

    buy("t")
    buy("t")


def once(store: redmodel.Store, proxied: redmodel.Store, lose: Any) -> None:
    """Exactly-once mode: scripts run as their +once variants, plain writes in
    once_command; a write whose every reply is lost is settled by once_fence."""
    store.save(Hat("once", 1, id="o1"))
    store.incr(Hat, "o1", "quantity", 1)
    store.incr_fields(Hat, "o1", {"quantity": 1})
    Queue(store, "ka_onceq", int).push(1, 2)
    SortedSet(store, "ka_oncez", str).incr("m", 1)
    store.save(Flat("o", Address(Street("l"), "c", [1, 2]), tags=["t"], id="o1"))
    store.incr(Flat, "o1", "count", 1)
    # a delete of a flat object with list items: under a write id, sent again with them
    store.save(Flat("p", Address(Street("l"), "c", [1, 2]), tags=["t"], id="o2"))
    assert store.delete(Flat, "o2")
    assert store.get(Flat, "o2") is None
    # indexed writes: claims, and an increment whose old entry the client does not know
    # (the script names the keys it needs, and the write is sent again with them)
    store.save(Bucketed("once", 1, sku="o1", id="o1"))
    assert store.incr(Bucketed, "o1", "stock", 2) == 2
    assert store.incr(Bucketed, "o1", "stock", 3) == 5
    assert store.delete(Bucketed, "o1")
    q = Queue(store, "ka_onceq", int)
    assert list(q.consume(name="w", max_items=1, poll=0.1)) == [1]
    proxied.save(Hat("fence", 10, id="o2"))
    lose("EVALSHA", times=3, when=lambda args: b"ka_hat:{o2}" in args)
    assert proxied.incr(Hat, "o2", "quantity", 1) == 11  # the fence found it recorded
    # the mode off: a fragile write sent again after a lost reply goes as its conditional
    # copy (if_exists around a plain command, a script's +guard variant: fix 32D)
    plain = redmodel.Store(proxied.client, resend=POLICY)
    lose("PEXPIRE")
    assert Queue(plain, "ka_onceq", int).expire(100)
    lose("EVALSHA", when=lambda args: b"ka_hat:{o2}" in args)
    assert plain.update(Hat, "o2", quantity=13)


def rebucket_version(buckets: int) -> type:
    @redmodel.model(prefix="ka_rb", buckets=buckets, layout="flat")
    @attrs.define
    class Moved:
        name: str
        address: Address
        id: str = redmodel.key_field(generated=False)

    return Moved


def rebucketed(store: redmodel.Store) -> None:
    """A bucket count changed: migrate_buckets moves the objects (the rebucket script:
    a page's renames on one server; on a cluster the checked delete after each copy)."""
    old, new = rebucket_version(2), rebucket_version(5)
    store.save_many([old(f"n{i}", Address(Street("l"), "c", [i]), id=f"r{i}")
                     for i in range(6)])
    assert store.migrate_buckets(new, from_buckets=2) >= 1
    assert store.count(new) == 6
    assert store.unregister(new)   # the registry_unregister script; counted again below
    assert store.count(new) == 6


def dropped_index(store: redmodel.Store, m: type) -> None:
    """A new version of the model no longer indexes ``stock``: drop_index deletes its
    entries and rewrites every record that holds some (the index_droplines script)."""
    spec = spec_of(m)

    @redmodel.model(prefix=spec.prefix, buckets=spec.buckets, unique=[("color", "size")])
    @attrs.define
    class Item:
        color: str = redmodel.field(index=True)
        size: int = redmodel.field(index="range", default=0)
        price: float = redmodel.field(index="range", default=0.0)
        tags: list[str] = redmodel.field(index=True, factory=list)
        stock: int = 0
        sku: str | None = redmodel.field(unique=True, default=None)
        ssn: str | None = redmodel.field(codec="json|fernet", index="blind", unique=True,
                                         default=None)
        id: str = redmodel.key_field(generated=False)

    store.adopt(Item)  # another class name here: the same model, a new version
    assert store.drop_index(Item, "stock") >= 1
    records = [v for tag in spec.tags() for v in store.client.hvals(
        spec.index_root(tag) + "rec")]
    assert records and not any(b"\x1fstock\x1f" in v for v in records)


def migrations(store: redmodel.Store, m: type) -> None:
    """A migration set: its lease, cursors and records (the migrations script), and a
    rewrite through transactions."""
    mig = Migrations("ka_migrations")
    mig.add("0001_rewrite", rewrite(m))
    assert [r.id for r in mig.apply(store, count=50)] == ["0001_rewrite"]
    store.client.delete(mig.key)


def workload(store: redmodel.Store, once_store: redmodel.Store,
             proxied: redmodel.Store, lose: Any, client: Any, cluster: bool) -> None:
    layouts(store, client)
    if not cluster:
        indexes(store, client, Indexed)
    indexes(store, client, Bucketed)
    containers(store, client)
    transactions(store)
    once(once_store, proxied, lose)
    migrations(store, Bucketed)
    rebucketed(store)
    dropped_index(store, Bucketed)  # last: it changes the model that owns the prefix


def run_audit(addresses: list[tuple[str, int]], go: Any) -> Audit:
    monitors = [Monitor(host, port) for host, port in addresses]
    try:
        go()
    finally:
        recorded = [(m.address, m.finish()) for m in monitors]
    audit = Audit()
    for address, lines in recorded:
        audit.check(address, lines)
    return audit


def assert_clean(audit: Audit) -> None:
    """No undeclared key, no unknown script, and every script of redmodel/lua was run
    (plain, and at least one in its exactly-once form)."""
    problems = list(dict.fromkeys(audit.violations))
    problems += [f"a script redmodel does not know ran: {n}" for n in sorted(audit.seen)
                 if n.startswith("<unknown")]
    missing = sorted(runnable_scripts() - {n.removesuffix("+once").removesuffix("+memo")
                                           for n in audit.seen})
    if missing:
        problems.append(f"scripts the audit's workload never ran (add them to it): {missing}")
    if not any(n.endswith("+once") for n in audit.seen):
        problems.append("no exactly-once (+once) variant of a script ran")
    if audit.commands == 0:
        problems.append("MONITOR showed no command run by a script")
    if problems:
        pytest.fail(f"{len(problems)} KEYS audit problems:\n" + "\n".join(problems),
                    pytrace=False)


POLICY = redmodel.ResendPolicy(attempts=3, backoff_base=0.0, deadline=5.0)


def test_every_script_declares_every_key_it_touches(redis_server: RedisServer,
                                                     redis_client: redis.Redis) -> None:
    redis_client.flushall()
    with FaultProxy(redis_server.host, redis_server.port) as proxy:
        store = redmodel.Store(redis_client)
        once_store = redmodel.Store(redis.Redis(host=redis_server.host,
                                                port=redis_server.port), exactly_once=True)
        proxied = redmodel.Store(redis.Redis(host=proxy.host, port=proxy.port,
                                             socket_timeout=1), exactly_once=True,
                                 resend=POLICY)
        try:
            audit = run_audit([(redis_server.host, redis_server.port)], lambda: workload(
                store, once_store, proxied, proxy.lose_reply, redis_client, cluster=False))
        finally:
            once_store.close()
            proxied.close()
    assert_clean(audit)


def test_every_script_declares_every_key_it_touches_on_a_cluster(
        redis_cluster: RedisClusterServer, redis_cluster_client: RedisCluster) -> None:
    client = redis_cluster_client
    client.flushall(target_nodes=RedisCluster.PRIMARIES)
    primaries = [(n.host, n.port) for n in client.get_primaries()]
    with ClusterFaultProxy(redis_cluster.addresses) as proxies:
        host, port = proxies.startup_nodes[0]
        store = redmodel.Store(client)
        once_store = redmodel.Store(redis_cluster.client(), exactly_once=True)
        proxied = redmodel.Store(RedisCluster(host=host, port=port, socket_timeout=1,
                                              address_remap=proxies.address_remap),
                                 exactly_once=True, resend=POLICY)
        try:
            audit = run_audit(primaries, lambda: workload(
                store, once_store, proxied, proxies.lose_reply, client, cluster=True))
        finally:
            once_store.close()
            proxied.close()
    assert_clean(audit)

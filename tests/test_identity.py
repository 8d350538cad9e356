"""Identities stay unique and members stay canonical across threads, processes and forks:
``new_id()`` never repeats (not in forked children, not when the clock steps back), and a
container member is the same bytes whatever the process's hash seed or a dict's insertion
order."""

from __future__ import annotations

import decimal
import json
import os
import random
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

import redmodel
from redmodel._models import _keys
from redmodel.containers._base import members_of
from tests.budget import sized
from tests.strategies import values

ROOT = Path(__file__).resolve().parent.parent

# ---- new_id ------------------------------------------------------------------------------

# Forks from a small process are cheap: the script loads redmodel/_models/_keys.py on its own (the
# same file, without the rest of the package) and forks `children` children in bursts, each
# making two ids right after the fork. With `frozen`, every process sees the same
# millisecond, the worst case for a counter inherited across fork().
_FORKER = textwrap.dedent("""
    import importlib.util, os, sys, time
    spec = importlib.util.spec_from_file_location("ids", sys.argv[1])
    ids = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ids)
    children, frozen, spinner = int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4] == "1"
    if frozen:
        now = time.time_ns()
        time.time_ns = lambda: now
    if spinner:  # another thread makes ids all along, so forks happen while it holds the lock
        import threading
        threading.Thread(target=lambda: [ids.new_id() for _ in iter(int, 1)], daemon=True).start()
    made, out = [], []
    read, write = os.pipe()
    while len(made) < children:
        out.append(ids.new_id())
        burst = []
        for _ in range(min(100, children - len(made))):
            pid = os.fork()
            if pid == 0:
                signal = __import__("signal")
                signal.alarm(5)  # a child stuck on an inherited lock dies instead of hanging
                os.write(write, (ids.new_id() + ids.new_id() + "\\n").encode())
                os._exit(0)
            burst.append(pid)
        made += burst
        data = b""
        while data.count(b"\\n") < len(burst):
            data += os.read(read, 65536)
        for pid in burst:
            _, status = os.waitpid(pid, 0)
            assert status == 0, f"child exited with status {status}"
        for line in data.decode().split():
            out += [line[:26], line[26:]]
    print(" ".join(out))
""")


def _forked_ids(children: int, *, frozen: bool, spinner: bool = False) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", _FORKER, str(ROOT / "redmodel" / "_models" / "_keys.py"),
         str(children), "1" if frozen else "0", "1" if spinner else "0"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.mark.parametrize("frozen", [True, False], ids=["one-millisecond", "real-clock"])
def test_forked_children_never_repeat_an_id(frozen: bool) -> None:
    children = sized(500, 1500)  # make test-long forks 1,500 (LONG_TESTS)
    made = _forked_ids(children, frozen=frozen)
    assert len(made) == children * 2 + -(-children // 100)  # and the parent's, per burst
    assert len(set(made)) == len(made)


def test_a_fork_while_another_thread_makes_ids_neither_hangs_nor_repeats() -> None:
    made = _forked_ids(300, frozen=True, spinner=True)
    assert len(set(made)) == len(made) == 300 * 2 + 3


def test_threads_never_repeat_an_id_and_each_sees_them_increase() -> None:
    per_thread: list[list[str]] = [[] for _ in range(8)]

    def make(out: list[str]) -> None:
        out.extend(redmodel.new_id() for _ in range(5000))

    threads = [threading.Thread(target=make, args=(out,)) for out in per_thread]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [i for out in per_thread for i in out]
    assert len(set(every)) == len(every) == 40_000
    for out in per_thread:
        assert out == sorted(out)


def test_ids_keep_increasing_when_the_clock_steps_back(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1_900_000_000_000_000_000]
    monkeypatch.setattr(_keys.time, "time_ns", lambda: clock[0])
    first = [redmodel.new_id() for _ in range(3)]
    clock[0] -= 3_600 * 10**9  # an hour back (NTP step)
    later = [redmodel.new_id() for _ in range(3)]
    clock[0] += 7_200 * 10**9
    last = redmodel.new_id()
    made = [*first, *later, last]
    assert made == sorted(made) and len(set(made)) == len(made)
    assert later[0][:10] == first[0][:10]  # the stepped-back ids keep the last millisecond
    assert last[:10] > first[0][:10]


def test_a_full_counter_borrows_the_next_millisecond(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_keys.time, "time_ns", lambda: 1_900_000_000_000_000_000)
    before = redmodel.new_id()
    monkeypatch.setattr(_keys, "_last_rand", _keys._RANDOM_MAX)
    after = redmodel.new_id()
    assert after > before
    assert after[:10] > before[:10]  # the first 10 characters are the millisecond


# ---- canonical members across hash seeds ---------------------------------------------------

_ADDER = textwrap.dedent("""
    import json, sys
    import redmodel
    store = redmodel.Store.from_url(sys.argv[1])
    turn = int(sys.argv[2])
    tags = frozenset(f"tag-{i}" for i in range(12))
    keys = [f"k{i}" for i in range(6)]
    order = keys[turn:] + keys[:turn]  # each process inserts the dict keys in another order
    nested = {k: frozenset(f"{k}-{i}" for i in range(5)) for k in order}
    redmodel.containers.Set(store, "frozen", frozenset[str]).add(tags)
    redmodel.containers.Set(store, "mutable", set[str]).add(set(tags))
    redmodel.containers.Set(store, "nested", frozenset[frozenset[str]]).add(
        frozenset(frozenset(f"{n}-{i}" for i in range(4)) for n in range(6)))
    redmodel.containers.Set(store, "dicts", dict[str, frozenset[str]]).add(nested)
    redmodel.containers.Set(store, "deep", dict[str, list[dict[str, set[str]]]]).add(
        {k: [{"inner": set(v)}] for k, v in nested.items()})
    print(json.dumps([list(tags), list(nested)]))
""")


def test_equal_members_from_processes_with_different_hash_seeds_are_one_member(
    redis_url: str, redis_client: Any
) -> None:
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", _ADDER, redis_url, str(turn)],
            cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": str(seed)},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for turn, seed in enumerate((1, 2, 3))
    ]
    orders = []
    for run in runs:
        out, err = run.communicate(timeout=60)
        assert run.returncode == 0, err
        orders.append(json.loads(out))
    # the test can fail: the processes really did iterate and insert in different orders
    assert len({tuple(tags) for tags, _ in orders}) > 1
    assert len({tuple(keys) for _, keys in orders}) == 3
    for key in ("frozen", "mutable", "nested", "dicts", "deep"):
        assert redis_client.scard(key) == 1, key


# ---- canonical encoding, as a property ------------------------------------------------------


class _OrderedFrozenset(frozenset[Any]):
    """A frozenset that iterates in the order it was given: an equal value whose iteration
    order is whatever the test picks, as another hash seed would give."""

    _order: list[Any]

    def __new__(cls, items: list[Any]) -> _OrderedFrozenset:
        made = super().__new__(cls, items)
        made._order = list(items)
        return made

    def __iter__(self) -> Any:
        return iter(self._order)


class _OrderedSet(set[Any]):
    def __init__(self, items: list[Any]) -> None:
        super().__init__(items)
        self._order = list(items)

    def __iter__(self) -> Any:
        return iter(self._order)


def _equal_variant(value: Any, rnd: random.Random) -> Any:
    """A value equal to ``value`` built differently: sets iterating and dicts inserted in a
    shuffled order, -0.0 for 0.0, an integral float as an int, 1.5 as Decimal 1.50."""
    if isinstance(value, dict):
        items = [(k, _equal_variant(v, rnd)) for k, v in value.items()]
        rnd.shuffle(items)
        return dict(items)
    if isinstance(value, (set, frozenset)):
        items = [_equal_variant(v, rnd) for v in value]
        rnd.shuffle(items)
        return (_OrderedFrozenset if isinstance(value, frozenset) else _OrderedSet)(items)
    if isinstance(value, list):
        return [_equal_variant(v, rnd) for v in value]
    if isinstance(value, tuple):
        return tuple(_equal_variant(v, rnd) for v in value)
    if attrs.has(type(value)):
        return attrs.evolve(value, **{f.name: _equal_variant(getattr(value, f.name), rnd)
                                      for f in attrs.fields(type(value))})
    if isinstance(value, float) and value == 0:
        return rnd.choice([0.0, -0.0])
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return rnd.choice([value, int(value)])
    if isinstance(value, decimal.Decimal) and value.is_finite():
        padded = value + decimal.Decimal("0.00")
        return padded if padded == value else value
    return value


@attrs.frozen
class Tagged:
    name: str
    tags: frozenset[str]
    weights: dict[str, float]


CANONICAL_TYPES = [
    (frozenset[str], "json"),
    (frozenset[frozenset[int]], "json"),
    (dict[str, frozenset[float]], "json"),
    (dict[int, dict[str, set[decimal.Decimal]]], "json"),
    (list[frozenset[bytes]], "json"),
    (tuple[frozenset[str], dict[str, float]], "json"),
    (Tagged, "json"),
    (Tagged, "msgpack"),
    (dict[str, frozenset[float]], "msgpack"),
    (Tagged, "yaml"),
    (dict[str, frozenset[float]], "yaml"),
]


@pytest.mark.parametrize(("tp", "codec"), CANONICAL_TYPES, ids=str)
def test_equal_values_encode_to_equal_bytes(tp: Any, codec: str) -> None:
    members = members_of(tp, codec, "property")

    @given(values(tp), st.randoms(use_true_random=False))
    def check(value: Any, rnd: random.Random) -> None:
        variant = _equal_variant(value, rnd)
        assert variant == value
        assert members.check(variant) is None
        data = members.encode(value)
        assert members.encode(variant) == data
        assert members.decode(data) == value

    check()

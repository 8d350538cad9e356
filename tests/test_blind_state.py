"""Property: no plaintext of an encrypted value ever leaves the application.

A Hypothesis state machine runs random operations on models with encrypted fields (plain
encrypted, blind-indexed, blind-unique): saves, updates, deletes, transactions, unique
saves that must fail, rotations of both key kinds (Fernet keys through ``rotate_keys``,
index keys through ``rotate_index_key``, with and without dropping the old key), reindex
and queries. Queries must answer what a plain-Python model says at every step. After
each run, a dump of every key name and value on the server (every type, field, member
and score), the log records captured at DEBUG, and every error message and repr the run
saw must contain no plaintext of any encrypted value. Runs on one server and on the
three-primary cluster (the models in 3 buckets, unique values claimed in their own).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import redis
import redis.cluster
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

import redmodel
from redmodel._models._specs import spec_of
from tests.keys import forget_keys
from tests.plaintext import dump, leaked

IDS = ["p0", "p1", "p2", "p3"]
NAMES = ["ann", "bob", "cid"]  # plain values: short, never a secret
# Secrets: at least 12 characters from the whole of Unicode (but surrogates and control
# characters), varied enough that no stored byte string holds one by chance. Hypothesis
# also draws the string constants of the code under test; a secret that is a piece of
# redmodel's own text (an error message's "nothing was ") is found in messages without
# having leaked, so those are left out.
_OWN_TEXT = "\n".join(p.read_text(encoding="utf-8")
                      for p in Path(redmodel.__file__).parent.rglob("*.py"))
SECRETS = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")),
                  min_size=12, max_size=20).filter(
    lambda s: len(set(s)) >= 6 and s not in _OWN_TEXT)


def declare(buckets: int | None) -> tuple[type, type]:
    @redmodel.model(prefix="sperson", buckets=buckets)
    @attrs.define
    class Person:
        name: str = redmodel.field(index=True)
        ssn: str | None = redmodel.field(codec="json|fernet", index="blind", unique=True,
                                         default=None)
        email: str = redmodel.field(codec="json|fernet", index="blind", default="")
        note: str = redmodel.field(codec="json|fernet", default="")
        id: str = redmodel.key_field(generated=False)

    @redmodel.model(prefix="smemo", buckets=buckets)
    @attrs.define
    class Memo:
        topic: str = redmodel.field(codec="json|fernet", index="blind")
        body: str = redmodel.field(codec="msgpack|zlib|fernet", default="")
        id: str = redmodel.key_field(generated=False)

    return Person, Memo


ONE, BUCKETED = declare(None), declare(3)


class NoPlaintext(RuleBasedStateMachine):
    """Subclassed per server with ``store``, ``models`` and ``flush``."""

    store: redmodel.Store
    models: tuple[type, type]
    flush: Callable[[], None]
    logs: pytest.LogCaptureFixture

    values = Bundle("values")

    def __init__(self) -> None:
        super().__init__()
        self.flush()
        self.logs.clear()
        self.Person, self.Memo = self.models
        self.people: dict[str, Any] = {}
        self.memos: dict[str, Any] = {}
        self.secrets: set[str] = set()
        self.seen: list[str] = []
        self.fernet_keys = [redmodel.codecs.FernetTransform.generate_key()]
        self.index_keys = [redmodel.generate_index_key()]
        redmodel.codecs.configure_fernet(keys=self.fernet_keys)
        redmodel.configure_index_keys(keys=self.index_keys)

    def look(self, *things: Any) -> None:
        self.seen.extend(repr(t) for t in things)
        self.seen.extend(str(t) for t in things)

    def taken(self, ssn: str | None, by: str) -> bool:
        return ssn is not None and any(p.ssn == ssn for i, p in self.people.items() if i != by)

    # ---- values ------------------------------------------------------------------------

    @initialize(target=values, secrets=st.lists(SECRETS, min_size=2, max_size=4, unique=True),
                data=st.data())
    def first_people(self, secrets: list[str], data: st.DataObject) -> Any:
        self.secrets.update(secrets)
        for pid in data.draw(st.lists(st.sampled_from(IDS), max_size=3, unique=True)):
            pick = st.sampled_from(secrets)
            self.save(pid, NAMES[0], data.draw(st.none() | pick), data.draw(pick),
                      data.draw(pick))
        return multiple(*secrets)

    @rule(target=values, secret=SECRETS)
    def new_secret(self, secret: str) -> str:
        self.secrets.add(secret)
        return secret

    # ---- writes ------------------------------------------------------------------------

    @rule(pid=st.sampled_from(IDS), name=st.sampled_from(NAMES), ssn=st.none() | values,
          email=values, note=values)
    def save(self, pid: str, name: str, ssn: str | None, email: str, note: str) -> None:
        person = self.Person(name, ssn, email, note, id=pid)
        self.look(person)
        try:
            self.store.save(person)
        except redmodel.UniqueViolationError as e:
            self.look(e)
            assert self.taken(ssn, pid)
        else:
            assert not self.taken(ssn, pid)
            self.people[pid] = person

    @rule(pid=st.sampled_from(IDS), ssn=st.none() | values, email=values)
    def update(self, pid: str, ssn: str | None, email: str) -> None:
        try:
            done = self.store.update(self.Person, pid, ssn=ssn, email=email)
        except redmodel.UniqueViolationError as e:
            self.look(e)
            assert pid in self.people and self.taken(ssn, pid)
            return
        assert done == (pid in self.people)
        if done:
            assert not self.taken(ssn, pid)
            self.people[pid] = attrs.evolve(self.people[pid], ssn=ssn, email=email)

    @rule(pid=st.sampled_from(IDS))
    def delete(self, pid: str) -> None:
        assert self.store.delete(self.Person, pid) == (pid in self.people)
        self.people.pop(pid, None)

    @rule(mid=st.sampled_from(IDS), topic=values, body=values)
    def memo_in_a_transaction(self, mid: str, topic: str, body: str) -> None:
        def write(tx: redmodel.transactions.Transaction) -> Any:
            memo = tx.get(self.Memo, mid)
            memo = self.Memo(topic, body, id=mid) if memo is None else attrs.evolve(
                memo, topic=topic, body=body)
            self.look(memo)
            tx.save(memo)
            return memo

        self.memos[mid] = self.store.transaction(write)()

    @precondition(lambda self: not spec_of(self.Person).claims)  # claims need round trips
    @rule(pid=st.sampled_from(IDS), note=values)
    def person_in_a_transaction(self, pid: str, note: str) -> None:
        def write(tx: redmodel.transactions.Transaction) -> bool:
            person = tx.get(self.Person, pid)
            if person is None:
                return False
            self.look(person)
            tx.update(self.Person, pid, note=note)
            return True

        if self.store.transaction(write)():
            self.people[pid] = attrs.evolve(self.people[pid], note=note)

    # ---- keys --------------------------------------------------------------------------

    @rule(drop=st.booleans())
    def rotate_fernet_keys(self, drop: bool) -> None:
        self.fernet_keys.insert(0, redmodel.codecs.FernetTransform.generate_key())
        redmodel.codecs.configure_fernet(keys=self.fernet_keys)
        self.store.rotate_keys(self.Person)
        self.store.rotate_keys(self.Memo)
        if drop:
            del self.fernet_keys[1:]
            redmodel.codecs.configure_fernet(keys=self.fernet_keys)

    @precondition(lambda self: len(self.index_keys) < 3)
    @rule()
    def add_index_key(self) -> None:
        self.index_keys.insert(0, redmodel.generate_index_key())
        redmodel.configure_index_keys(keys=self.index_keys)

    @rule(drop=st.booleans())
    def rotate_index_key(self, drop: bool) -> None:
        for model in (self.Person, self.Memo):
            self.store.rotate_index_key(model, count=2)
        if drop:
            del self.index_keys[1:]
            redmodel.configure_index_keys(keys=self.index_keys)
            for model in (self.Person, self.Memo):
                self.store.rotate_index_key(model)

    @rule()
    def reindex(self) -> None:
        self.store.reindex(self.Person)
        self.store.reindex(self.Memo)

    # ---- reads -------------------------------------------------------------------------

    @rule(value=values)
    def queries_answer_what_the_model_says(self, value: str) -> None:
        query = self.store.find(self.Person, email=value)
        self.look(query)
        assert sorted(query.ids()) == sorted(i for i, p in self.people.items()
                                             if p.email == value)
        assert sorted(self.store.find(self.Person, ssn=value).ids()) == sorted(
            i for i, p in self.people.items() if p.ssn == value)
        assert sorted(self.store.find(self.Memo, topic=value).ids()) == sorted(
            i for i, m in self.memos.items() if m.topic == value)
        found = self.store.get_by(self.Person, ssn=value)
        self.look(found)
        assert found == next((p for p in self.people.values() if p.ssn == value), None)

    @rule(pid=st.sampled_from(IDS))
    def get(self, pid: str) -> None:
        got = self.store.get(self.Person, pid)
        self.look(got)
        assert got == self.people.get(pid)

    # ---- the property ----------------------------------------------------------------

    def teardown(self) -> None:
        secrets = sorted(self.secrets)
        assert leaked(secrets, dump(self.store.client)) == [], "plaintext in Redis"
        assert leaked(secrets, self.logs.text) == [], "plaintext in the logs"
        assert leaked(secrets, "\n".join(self.seen)) == [], "plaintext in a repr or error"
        for model in (self.Person, self.Memo):
            # verify checks the entries a write makes now: under the newest index key
            self.store.rotate_index_key(model)
            assert self.store.verify(model) == []


def run(store: redmodel.Store, models: tuple[type, type], flush: Callable[[], None],
        logs: pytest.LogCaptureFixture, share: int) -> None:
    logs.set_level(logging.DEBUG)
    machine = type("Machine", (NoPlaintext,), {
        "store": store, "models": models, "flush": staticmethod(flush), "logs": logs})
    profile = settings()
    run_state_machine_as_test(machine, settings=settings(
        profile, max_examples=max(3, profile.max_examples // share), stateful_step_count=25))


@pytest.fixture(autouse=True)
def restore_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    forget_keys(monkeypatch)


def test_no_plaintext_leaves_the_application_on_one_server(
        redis_client: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    run(redmodel.Store(redis_client), ONE, redis_client.flushall, caplog, 2)


def test_no_plaintext_leaves_the_application_on_the_cluster(
        redis_cluster_client: redis.cluster.RedisCluster,
        caplog: pytest.LogCaptureFixture) -> None:
    def flush() -> None:
        redis_cluster_client.flushall(target_nodes=redis.cluster.RedisCluster.PRIMARIES)

    run(redmodel.Store(redis_cluster_client), BUCKETED, flush, caplog, 4)

"""Attack 33F (query steps bounded whatever the query's shape, after fix 33E): one failing
test per finding, each holding the code to the docs sentence quoted in its docstring; notes
in /work/notes/s33/ATK-F-FINDINGS.md."""
from __future__ import annotations

import attrs
import pytest

import redmodel
from redmodel import Q, one_of
from redmodel._indexes._query import _Compiler
from redmodel._models._specs import spec_of
from tests.keys import use_keys
from tests.test_fix33e import Thing, rows
from tests.test_fix33h import nodes as _nodes


@redmodel.model(prefix="atk33f")
@attrs.define
class Patient:
    name: str
    ssn: str = redmodel.field(codec="json|fernet", index="blind")
    id: str = redmodel.key_field(generated=False)


@pytest.mark.parametrize("shape", ["empty_one_of", "not_everything"])
def test_f1_nodes_that_name_no_index_term_escape_the_limit(
        store: redmodel.Store, shape: str) -> None:
    """docs/queries.md "Cost of each query shape": "a query of many terms takes more,
    equally short steps rather than longer ones: each step is sent the whole expression
    and parses it ... hence at most **100 index terms** per query (`MAX_TERMS` ...)", and
    "a script call holds the server for about half a millisecond".

    An expression of one index term and thousands of operators that name none (an empty
    ``one_of``, a ``~Q()``) is neither refused nor split: every step is sent and parses the
    whole expression (50-220 ms a step measured on Redis 7.0.15). Either QueryError at
    find(), or an expression no wider than its terms."""
    store.save_many(rows()[:20])
    if shape == "empty_one_of":  # OR(c1, AND(ORD 0, ORD 0, ...)): 1 term, 10,001 nodes
        q = Q(color="c1") | Q(*[Q(color=one_of([])) for _ in range(10_000)])
    else:  # OR(c1, AND(NOT ALL, ...)): 1 term
        q = Q(color="c1") | Q(*[~Q() for _ in range(10_000)])
    try:
        query = store.find(Thing, q)
    except redmodel.QueryError:
        return  # refused like a query of too many terms: fine
    assert query.ids() == ["t0001"]
    # (the lead: the work sent, not the time taken: speed is never asserted in a test) the
    # expression every step is sent and parses is no wider than the terms it names
    assert _nodes(_Compiler(spec_of(Thing)).compile_top(q)) <= 4


def test_f2_a_one_of_of_100_blind_values_is_refused_during_a_rotation(
        store: redmodel.Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/queries.md: a query may not name "more than 100 index terms (`MAX_TERMS`; a
    `one_of` names one per value: a longer list is queried in parts of up to 100 values,
    their ids merged)"; docs/codecs.md: "every key is tried by a lookup (one index set per
    key, combined in the query script), so queries keep working while a rotation is in
    progress".

    A blind field's value names one term per configured index key: with two keys (step 1
    of a rotation) a one_of of 100 values - or of 51 - that ran before is refused ("names
    200 index terms ... a one_of names one per value")."""
    old, new = redmodel.generate_index_key(), redmodel.generate_index_key()
    use_keys(monkeypatch, index=[old])
    store.save_many([Patient("p", f"s{i}", id=f"p{i}") for i in range(3)])
    q = Q(ssn=one_of([f"s{i}" for i in range(100)]))
    assert sorted(store.find(Patient, q).ids()) == ["p0", "p1", "p2"]
    redmodel.configure_index_keys(keys=[new, old])  # step 1 of "Rotating the index key"
    assert sorted(store.find(Patient, q).ids()) == ["p0", "p1", "p2"]  # FAILS: QueryError

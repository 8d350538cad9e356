"""Every contestant's code: hand-written redis-py, walrus, rom, pydantic-redis, redis-om.

Two shapes, one per kind of row:

- **Indexed** (the query benchmark and the contest's indexed rows): ``HandWritten``,
  ``Walrus`` and ``Rom`` below, with ``bench_queries.Redmodel``: ``save_one``,
  ``save_chunk``, the six queries ``q1``..``q6`` and ``ids``/``object_key`` to compare
  results, each bound to its own logical database. The hand-written one decodes into
  redmodel's own attrs ``Hat``; walrus and rom return their own typed model instances.
- **Plain** (the contest's unindexed rows, on the tutorial hat of ``_models``):
  ``HandPlain``, ``RedmodelPlain``, ``WalrusPlain``, ``RomPlain``, ``PydanticRedisPlain``
  and ``RedisOmPlain``. Each has ``prepare`` (the hats as its own model's objects, built
  before any timing) and one method per row it can do (``save``, ``get``, ``save_many``,
  ``get_many``, ``buy``, ``update``, ``incr``, ``save_flat``, ``save_many_flat``,
  ``get_flat``); ``na`` says why a row is missing and ``how`` names the idiom used where
  it is not the obvious one.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, ClassVar
from urllib.parse import urlparse

import redis

import redmodel
from benchmarks import bench_mapper
from benchmarks._models import HatFlat, HatHash

__all__ = ["PLAIN", "HandPlain", "HandWritten", "PydanticRedisPlain", "RedisOmPlain",
           "RedmodelPlain", "Rom", "RomPlain", "Walrus", "WalrusPlain"]


class HandWritten:
    """What a careful redis-py user writes: a hash per hat, a SET per color and style
    value, a ZSET per number, all written in one pipeline (MULTI/EXEC for one hat, plain
    pipelining in chunks for many); queries read the index keys (pipelined when more than
    one), intersect in Python when a ZSET is involved, then HGETALL every hit in one
    pipeline and decode into the attrs ``Hat``."""

    name = "hand-written redis-py"
    PREFIX = "hw:hat:"
    IDX = "hw:idx:"

    def __init__(self, url: str, db: int, hat_cls: type) -> None:
        self.r = redis.Redis.from_url(url, db=db, decode_responses=False)
        self.Hat = hat_cls

    def close(self) -> None:
        self.r.close()

    def _queue(self, pipe: Any, h: Any) -> None:
        pipe.hset(self.PREFIX + h.id, mapping={"color": h.color, "style": h.style,
                                               "price": repr(h.price),
                                               "quantity": h.quantity})
        pipe.sadd(f"{self.IDX}color:{h.color}", h.id)
        pipe.sadd(f"{self.IDX}style:{h.style}", h.id)
        pipe.zadd(self.IDX + "price", {h.id: h.price})
        pipe.zadd(self.IDX + "quantity", {h.id: h.quantity})

    def save_one(self, h: Any) -> None:
        with self.r.pipeline(transaction=True) as pipe:
            self._queue(pipe, h)
            pipe.execute()

    def change_color(self, hat_id: str, color: str) -> None:
        """Load a hat and give it another color, exactly: the old color's SET loses the
        id in the same MULTI that writes the new one, under WATCH (a writer between the
        read and EXEC makes it read again), as the blind ``save_one`` cannot."""
        key = self.PREFIX + hat_id
        with self.r.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(key)
                    d = pipe.hgetall(key)
                    old = self._decode(hat_id.encode(), d)
                    pipe.multi()
                    pipe.hset(key, "color", color)
                    pipe.srem(f"{self.IDX}color:{old.color}", hat_id)
                    pipe.sadd(f"{self.IDX}color:{color}", hat_id)
                    pipe.execute()
                    return
                except redis.WatchError:
                    continue

    def save_chunk(self, hats: Sequence[Any], chunk: int = 500) -> None:
        for i in range(0, len(hats), chunk):
            with self.r.pipeline(transaction=False) as pipe:
                for h in hats[i:i + chunk]:
                    self._queue(pipe, h)
                pipe.execute()

    def _fetch(self, ids: Sequence[bytes]) -> list[Any]:
        if not ids:
            return []
        with self.r.pipeline(transaction=False) as pipe:
            for i in ids:
                pipe.hgetall(self.PREFIX + i.decode())
            replies = pipe.execute()
        return [self._decode(i, d) for i, d in zip(ids, replies, strict=True) if d]

    def _decode(self, i: bytes, d: dict[bytes, bytes]) -> Any:
        return self.Hat(color=d[b"color"].decode(), style=d[b"style"].decode(),
                        price=float(d[b"price"]), quantity=int(d[b"quantity"]),
                        id=i.decode())

    def q1(self, color: str) -> list[Any]:
        return self._fetch(list(self.r.smembers(f"{self.IDX}color:{color}")))

    def q2(self, low: float, high: float) -> list[Any]:
        return self._fetch(self.r.zrangebyscore(self.IDX + "price", low, high))

    def q3(self, color: str, below: float) -> list[Any]:
        with self.r.pipeline(transaction=False) as pipe:
            pipe.smembers(f"{self.IDX}color:{color}")
            pipe.zrangebyscore(self.IDX + "price", "-inf", f"({below!r}")
            members, cheap = pipe.execute()
        return self._fetch([i for i in cheap if i in members])

    def q4(self, n: int) -> list[Any]:
        return self._fetch(self.r.zrevrange(self.IDX + "price", 0, n - 1))

    def q5(self, style: str) -> int:
        return int(self.r.scard(f"{self.IDX}style:{style}"))

    def q6(self, color: str, style: str, above: int) -> list[Any]:
        with self.r.pipeline(transaction=False) as pipe:
            pipe.sinter(f"{self.IDX}color:{color}", f"{self.IDX}style:{style}")
            pipe.zrangebyscore(self.IDX + "quantity", f"({above}", "+inf")
            both, many = pipe.execute()
        return self._fetch([i for i in many if i in both])

    @staticmethod
    def ids(objs: Sequence[Any]) -> set[str]:
        return {o.id for o in objs}

    def object_key(self, hat_id: str, n: int) -> str:
        return self.PREFIX + hat_id


def walrus_model(url: str, db: int) -> tuple[Any, Any]:
    """(the walrus Database, a walrus Model class bound to it)."""
    from walrus import Database, FloatField, IntegerField, Model, TextField  # noqa: PLC0415

    wdb = Database.from_url(url, db=db)

    class WHat(Model):
        __database__ = wdb
        __namespace__ = "w"
        id = TextField(primary_key=True)
        color = TextField(index=True)
        style = TextField(index=True)
        price = FloatField(index=True)
        quantity = IntegerField(index=True)

    return wdb, WHat


class Walrus:
    """walrus 0.9 ``Model`` with ``index=True`` on the four fields. walrus keeps, per
    indexed field, a SET per distinct value (also for the numbers and for the primary
    key) and, for numbers, a ZSET; ``create`` writes each of them in its own round trip
    (no bulk API: many saves are a loop). A query builds temporary keys
    (SINTERSTORE/ZINTERSTORE with an expiry), then ``load``s each hit with EXISTS +
    HGETALL, one round trip each; ``order_by`` is a server-side SORT BY ``*->price`` of
    every id, of which we take 10."""

    name = "walrus"

    def __init__(self, url: str, db: int) -> None:
        from walrus.query import Executor  # noqa: PLC0415

        self.db, self.M = walrus_model(url, db)
        self.executor = Executor(self.db)

    def close(self) -> None:
        self.db.close()

    def save_one(self, h: Any) -> None:
        self.M.create(id=h.id, color=h.color, style=h.style, price=h.price,
                      quantity=h.quantity)

    def save_chunk(self, hats: Sequence[Any]) -> None:
        for h in hats:
            self.save_one(h)

    def change_color(self, hat_id: str, color: str) -> None:
        h = self.M.load(hat_id)  # EXISTS + HGETALL
        h.color = color
        h.save()  # loads it again, removes every index entry, writes all of them

    def q1(self, color: str) -> list[Any]:
        return list(self.M.query(self.M.color == color))

    def q2(self, low: float, high: float) -> list[Any]:
        return list(self.M.query((self.M.price >= low) & (self.M.price <= high)))

    def q3(self, color: str, below: float) -> list[Any]:
        return list(self.M.query((self.M.color == color) & (self.M.price < below)))

    def q4(self, n: int) -> list[Any]:
        return list(itertools.islice(self.M.query(order_by=self.M.price.desc()), n))

    def q5(self, style: str) -> int:
        return len(self.executor.execute(self.M.style == style))

    def q6(self, color: str, style: str, above: int) -> list[Any]:
        m = self.M
        return list(m.query((m.color == color) & (m.style == style) & (m.quantity > above)))

    @staticmethod
    def ids(objs: Sequence[Any]) -> set[str]:
        return {o.id for o in objs}

    @staticmethod
    def object_key(hat_id: str, n: int) -> str:
        return f"w|what:id.{hat_id}"


_ROM: dict[str, Any] = {}


def rom_model() -> Any:
    """rom's model class (rom registers models by name: defined once per process)."""
    if "RHat" not in _ROM:
        import rom  # noqa: PLC0415

        class RHat(rom.Model):  # type: ignore[misc]
            hid = rom.Text()
            color = rom.Text(index=True, keygen=rom.IDENTITY)
            style = rom.Text(index=True, keygen=rom.IDENTITY)
            price = rom.Float(index=True)
            quantity = rom.Integer(index=True)

        _ROM["RHat"] = RHat
    return _ROM["RHat"]


class Rom:
    """rom 1.1 ``Model`` (integer auto-increment primary key, so the hat id is a plain
    ``hid`` column), ``index=True`` with the IDENTITY keygen on color and style, numeric
    (ZSET) indexes on price and quantity. ``save`` is one Lua script call per object
    (after an INCR for the id); rom's ``session.save(many)`` is a loop of those. A query
    runs one Lua script into a temporary ZSET, then fetches the hits' HGETALLs in one
    pipeline."""

    name = "rom"
    NO_CHANGE = ("rom's primary key is its own auto-increment integer and the hat id an "
                 "unindexed column, so loading a hat by its id is a scan: not measured")

    def __init__(self, url: str, db: int) -> None:
        import rom.util  # noqa: PLC0415

        self.r = redis.Redis.from_url(url, db=db)
        rom.util.CONNECTION = self.r  # rom's one global connection
        self.M = rom_model()
        self.session = rom.util.session

    def close(self) -> None:
        self.r.close()

    def save_one(self, h: Any) -> None:
        self.M(hid=h.id, color=h.color, style=h.style, price=h.price,
               quantity=h.quantity).save()
        self.session.rollback()  # forget the entity: rom's session caches every object

    def save_chunk(self, hats: Sequence[Any]) -> None:
        m = self.M
        objs = [m(hid=h.id, color=h.color, style=h.style, price=h.price, quantity=h.quantity)
                for h in hats]
        self.session.save(objs)
        self.session.rollback()

    def _all(self, q: Any) -> list[Any]:
        out = q.all()
        self.session.rollback()
        return list(out)

    def q1(self, color: str) -> list[Any]:
        return self._all(self.M.query.filter(color=color))

    def q2(self, low: float, high: float) -> list[Any]:
        return self._all(self.M.query.filter(price=(low, high)))

    def q3(self, color: str, below: float) -> list[Any]:
        # rom's ranges are inclusive; prices never fall on the half-cent bounds used
        return self._all(self.M.query.filter(color=color, price=(None, below)))

    def q4(self, n: int) -> list[Any]:
        return self._all(self.M.query.order_by("-price").limit(0, n))

    def q5(self, style: str) -> int:
        return int(self.M.query.filter(style=style).count())

    def q6(self, color: str, style: str, above: int) -> list[Any]:
        return self._all(self.M.query.filter(color=color, style=style,
                                             quantity=(above + 1, None)))

    @staticmethod
    def ids(objs: Sequence[Any]) -> set[str]:
        return {o.hid for o in objs}

    @staticmethod
    def object_key(hat_id: str, n: int) -> str:
        return f"RHat:{n + 1}"  # the n-th hat saved got primary key n + 1



# ---- plain contestants: the tutorial hat, no secondary index -----------------------------

BUY_STOCK = 10**12  # the hot hat of the buy row never sells out
NO_FLAT = "no flat layout (one key per field): it stores one hash per object"
WATCH_HOW = ("no read-then-write transaction of its own: the tutorial's WATCH loop through "
             "its client")
NO_INCR = "no atomic increment of a field"
NO_FLATS = {"save_flat": NO_FLAT, "save_many_flat": NO_FLAT, "get_flat": NO_FLAT}
Notes = dict[str, str]  # row -> why it is n/a, or how it is done


def tutorial_fields(h: Any) -> dict[str, Any]:
    return {"color": h.color, "price": h.price, "style": h.style, "quantity": h.quantity,
            "npurchased": h.npurchased}


def watch_buy(client: Any, key: str) -> None:
    """The redis-py tutorial's ``buyitem()`` on any contestant's hash and client: WATCH,
    HGET quantity, MULTI, HINCRBY x2, EXEC, retried on a conflict. The contest uses it for
    the mappers that have no read-then-write transaction of their own."""
    with client.pipeline() as pipe:
        while True:
            try:
                pipe.watch(key)
                nleft = int(pipe.hget(key, "quantity"))
                if nleft <= 0:
                    pipe.unwatch()
                    raise RuntimeError("sold out")
                pipe.multi()
                pipe.hincrby(key, "quantity", -1)
                pipe.hincrby(key, "npurchased", 1)
                pipe.execute()
                return
            except redis.WatchError:
                continue


def _host_port(url: str) -> tuple[str, int]:
    u = urlparse(url)
    return u.hostname or "127.0.0.1", u.port or 6379


class HandPlain(bench_mapper.HandWritten):
    """bench_mapper's hand-written hat shop: HSET mapping= / HGETALL + int()/float()/
    .decode() into the attrs hat, one pipeline per chunk, HSET of one field, HINCRBY, the
    tutorial's buy; flat: MSET/MGET of one key per field. ``update_guarded`` and
    ``incr_guarded``: the same update and increment with redmodel's guarantee (a
    registered script: EXISTS, then HSET / HINCRBY)."""

    name = "hand-written redis-py"
    na: ClassVar[Notes] = {}
    how: ClassVar[Notes] = {}

    def __init__(self, url: str, db: int) -> None:
        super().__init__(redis.Redis.from_url(url, db=db, decode_responses=False))

    def close(self) -> None:
        self.r.close()

    @staticmethod
    def prepare(hats: Sequence[Any]) -> list[Any]:
        return list(hats)

    @staticmethod
    def prepare_flat(hats: Sequence[Any]) -> list[Any]:
        return list(hats)

    def stock(self, id_: str) -> None:
        self.save(HatHash(id=id_, color="black", price=49.99, style="fitted",
                          quantity=BUY_STOCK))


class RedmodelPlain:
    """redmodel's Store (RESP3, hiredis; chunk_size 1,000, so a bulk call of the contest's
    1,000 objects is one round trip, as the hand-written code's one pipeline per call) on
    the tutorial hat's hash and flat models; buy is bench_mapper's ``@redmodel.transaction``."""

    name = "redmodel"
    na: ClassVar[Notes] = {}
    how: ClassVar[Notes] = {}

    def __init__(self, url: str, db: int) -> None:
        self.store = redmodel.Store.from_url(url, db=db, chunk_size=1000)
        self._buy = bench_mapper.buy.bind(self.store)

    def close(self) -> None:
        self.store.close()

    @staticmethod
    def prepare(hats: Sequence[Any]) -> list[Any]:
        return list(hats)

    @staticmethod
    def prepare_flat(hats: Sequence[Any]) -> list[Any]:
        return [HatFlat(id=h.id, **tutorial_fields(h)) for h in hats]

    def stock(self, id_: str) -> None:
        self.store.save(HatHash(id=id_, color="black", price=49.99, style="fitted",
                                quantity=BUY_STOCK))

    def save(self, h: Any) -> None:
        self.store.save(h)

    def save_many(self, hats: Sequence[Any]) -> None:
        self.store.save_many(hats)

    def get(self, id_: str) -> Any:
        return self.store.get(HatHash, id_)

    def get_many(self, ids: Sequence[str]) -> list[Any]:
        return self.store.get_many(HatHash, ids)

    def buy(self, id_: str) -> None:
        self._buy(id_)

    def update(self, id_: str, color: str) -> None:
        self.store.update(HatHash, id_, color=color)

    def incr(self, id_: str, amount: int) -> int:
        return int(self.store.incr(HatHash, id_, "quantity", amount))

    # the same calls, in the rows whose hand-written side has redmodel's existence check
    update_guarded = update
    incr_guarded = incr

    def save_flat(self, h: Any) -> None:
        self.store.save(h)

    def save_many_flat(self, hats: Sequence[Any]) -> None:
        self.store.save_many(hats)

    def get_flat(self, id_: str) -> Any:
        return self.store.get(HatFlat, id_)


class WalrusPlain:
    """walrus 0.9 ``Model`` with a text primary key and no ``index=True``. ``create``
    clears the hash (DEL), writes it (HSET) and adds the id to the model's all-ids SET:
    three round trips; ``load`` is EXISTS + HGETALL. walrus has no bulk call, no partial
    update by id and no WATCH transaction."""

    name = "walrus"
    na: ClassVar[Notes] = dict(NO_FLATS)
    how: ClassVar[Notes] = {
        "save_many": "a loop of `create` (no bulk save)",
        "get_many": "a loop of `load` (no bulk get)",
        "update": "`load`, set the field, `save` (no partial update by id; `save` reloads, "
                  "deletes and rewrites the hash)",
        "incr": "`Model.incr` on an instance built from the id (HINCRBY, no load)",
        "buy": WATCH_HOW,
    }

    def __init__(self, url: str, db: int) -> None:
        from walrus import Database, FloatField, IntegerField, Model, TextField  # noqa: PLC0415

        self.db = Database.from_url(url, db=db)

        class WPlainHat(Model):
            __database__ = self.db
            __namespace__ = "wp"
            id = TextField(primary_key=True)
            color = TextField()
            price = FloatField()
            style = TextField()
            quantity = IntegerField()
            npurchased = IntegerField()

        self.M = WPlainHat

    def close(self) -> None:
        self.db.close()

    @staticmethod
    def prepare(hats: Sequence[Any]) -> list[dict[str, Any]]:
        return [{"id": h.id, **tutorial_fields(h)} for h in hats]

    def stock(self, id_: str) -> None:
        self.M.create(id=id_, color="black", price=49.99, style="fitted", quantity=BUY_STOCK,
                      npurchased=0)

    def save(self, fields: dict[str, Any]) -> None:
        self.M.create(**fields)

    def save_many(self, many: Sequence[dict[str, Any]]) -> None:
        create = self.M.create
        for fields in many:
            create(**fields)

    def get(self, id_: str) -> Any:
        return self.M.load(id_)

    def get_many(self, ids: Sequence[str]) -> list[Any]:
        load = self.M.load
        return [load(i) for i in ids]

    def buy(self, id_: str) -> None:
        watch_buy(self.db, self.M._query.get_primary_hash_key(id_))

    def update(self, id_: str, color: str) -> None:
        h = self.M.load(id_)
        h.color = color
        h.save()

    def incr(self, id_: str, amount: int) -> int:
        return int(self.M(id=id_).incr(self.M.quantity, amount))


_ROM_PLAIN: dict[str, Any] = {}


def rom_plain_model() -> Any:
    """rom's unindexed hat (rom registers models by name: defined once per process)."""
    if "RPlainHat" not in _ROM_PLAIN:
        import rom  # noqa: PLC0415

        class RPlainHat(rom.Model):  # type: ignore[misc]
            hid = rom.Text()
            color = rom.Text()
            price = rom.Float()
            style = rom.Text()
            quantity = rom.Integer()
            npurchased = rom.Integer()

        _ROM_PLAIN["RPlainHat"] = RPlainHat
    return _ROM_PLAIN["RPlainHat"]


class RomPlain:
    """rom 1.1 ``Model`` without indexes, on its own connection (the model's ``_conn``).
    Its primary key is an auto-increment integer, so the hat id is a plain ``hid`` column
    and every save of a new entity is INCR + one Lua script; ``session.save(many)`` is a
    loop of those, ``Model.get(list)`` one MULTI pipeline of HGETALLs. The session caches
    every entity it sees: it is rolled back after each call, as a request would."""

    name = "rom"
    NO_CHANGE = ("rom's primary key is its own auto-increment integer and the hat id an "
                 "unindexed column, so loading a hat by its id is a scan: not measured")
    na: ClassVar[Notes] = {
        "incr": NO_INCR + " (`transfer` moves a value between two entities and records it "
                          "in a third)",
        **NO_FLATS,
    }
    how: ClassVar[Notes] = {
        "save": "`Model(...).save()`: always a new entity (no upsert by a key of ours)",
        "save_many": "`session.save(list)`: a loop of single saves",
        "update": "`get`, set the field, `save` (writes only changed columns)",
        "buy": WATCH_HOW,
    }

    def __init__(self, url: str, db: int) -> None:
        import rom.util  # noqa: PLC0415

        self.r = redis.Redis.from_url(url, db=db)
        self.M = rom_plain_model()
        self.M._conn = self.r  # this model's connection; the indexed RHat keeps the global
        self.session = rom.util.session
        self.pk: dict[str, int] = {}  # hat id -> rom's primary key of its first save

    def close(self) -> None:
        self.r.close()

    @staticmethod
    def prepare(hats: Sequence[Any]) -> list[dict[str, Any]]:
        return [{"hid": h.id, **tutorial_fields(h)} for h in hats]

    def _remember(self, entities: Sequence[Any]) -> None:
        for e in entities:
            self.pk.setdefault(e.hid, e.id)

    def stock(self, id_: str) -> None:
        self.save({"hid": id_, "color": "black", "price": 49.99, "style": "fitted",
                   "quantity": BUY_STOCK, "npurchased": 0})

    def save(self, fields: dict[str, Any]) -> None:
        e = self.M(**fields)
        e.save()
        self._remember([e])
        self.session.rollback()

    def save_many(self, many: Sequence[dict[str, Any]]) -> None:
        m = self.M
        entities = [m(**fields) for fields in many]
        self.session.save(entities)
        self._remember(entities)
        self.session.rollback()

    def get(self, id_: str) -> Any:
        e = self.M.get(self.pk[id_])
        self.session.rollback()
        return e

    def get_many(self, ids: Sequence[str]) -> list[Any]:
        pk = self.pk
        out = self.M.get([pk[i] for i in ids])
        self.session.rollback()
        return list(out)

    def buy(self, id_: str) -> None:
        watch_buy(self.r, f"{self.M._namespace}:{self.pk[id_]}")

    def update(self, id_: str, color: str) -> None:
        e = self.M.get(self.pk[id_])
        e.color = color
        e.save()
        self.session.rollback()


_PYDANTIC_REDIS: dict[str, Any] = {}


def pydantic_redis_model() -> Any:
    """pydantic-redis's hat (one class per process; each run registers it with its Store)."""
    if "PHat" not in _PYDANTIC_REDIS:
        from pydantic_redis import Model  # noqa: PLC0415

        class PHat(Model):  # type: ignore[misc]
            _primary_key_field: str = "id"
            id: str
            color: str
            price: float
            style: str
            quantity: int = 0
            npurchased: int = 0

        _PYDANTIC_REDIS["PHat"] = PHat
    return _PYDANTIC_REDIS["PHat"]


class PydanticRedisPlain:
    """pydantic-redis 0.7 (pydantic 2): ``insert`` writes each record's hash and adds its
    key to the model's all-ids ZSET inside MULTI/EXEC, one transaction per call (one
    object or a list); ``select(ids=...)`` reads any number of records in one Lua script;
    ``update`` is a partial HSET by id. No secondary indexes, no increment, no WATCH."""

    name = "pydantic-redis"
    na: ClassVar[Notes] = {"incr": NO_INCR, **NO_FLATS}
    how: ClassVar[Notes] = {"buy": WATCH_HOW}

    def __init__(self, url: str, db: int) -> None:
        from pydantic_redis import RedisConfig, Store  # noqa: PLC0415

        host, port = _host_port(url)
        self.store = Store(name=f"contest{db}", redis_config=RedisConfig(host=host, port=port,
                                                                          db=db))
        self.M = pydantic_redis_model()
        self.store.register_model(self.M)
        self.r = self.store.redis_store

    def close(self) -> None:
        self.r.close()

    def prepare(self, hats: Sequence[Any]) -> list[Any]:
        m = self.M
        return [m(id=h.id, **tutorial_fields(h)) for h in hats]

    def stock(self, id_: str) -> None:
        self.M.insert(self.M(id=id_, color="black", price=49.99, style="fitted",
                             quantity=BUY_STOCK))

    def save(self, h: Any) -> None:
        self.M.insert(h)

    def save_many(self, hats: Sequence[Any]) -> None:
        self.M.insert(list(hats))

    def get(self, id_: str) -> Any:
        return self.M.select(ids=[id_])[0]

    def get_many(self, ids: Sequence[str]) -> list[Any]:
        return list(self.M.select(ids=list(ids)) or [])

    def buy(self, id_: str) -> None:
        from pydantic_redis._shared.model.prop_utils import get_redis_key  # noqa: PLC0415

        watch_buy(self.r, get_redis_key(self.M, id_))

    def update(self, id_: str, color: str) -> None:
        self.M.update(id_, {"color": color})


class RedisOmPlain:
    """redis-om 1.x ``HashModel`` on plain Redis (no RediSearch module): ``save`` is one
    HSET of ``model_dump``, ``add(list)`` one pipeline of them, ``get`` HGETALL +
    ``model_validate``. redis-om refuses to build a key for a model without
    ``index=True``, so the class says it; the RediSearch index itself is never created
    (no ``Migrator``), which leaves ``find`` (every query, and any multi-get) unusable."""

    name = "redis-om"
    na: ClassVar[Notes] = {"incr": NO_INCR, **NO_FLATS}
    how: ClassVar[Notes] = {
        "get_many": "a loop of `get` (a multi-get is `find`, which needs RediSearch)",
        "update": "`get`, then `update(color=...)`, which rewrites the whole hash",
        "buy": WATCH_HOW,
    }

    def __init__(self, url: str, db: int) -> None:
        from redis_om import HashModel  # noqa: PLC0415

        self.r = redis.Redis.from_url(url, db=db, decode_responses=True)
        client = self.r

        class OHat(HashModel, index=True):  # type: ignore[misc, call-arg]
            color: str
            price: float
            style: str
            quantity: int = 0
            npurchased: int = 0

            class Meta:
                database = client
                global_key_prefix = "om"
                model_key_prefix = "hat"

        self.M = OHat

    def close(self) -> None:
        self.r.close()

    def prepare(self, hats: Sequence[Any]) -> list[Any]:
        m = self.M
        return [m(pk=h.id, **tutorial_fields(h)) for h in hats]

    def stock(self, id_: str) -> None:
        self.M(pk=id_, color="black", price=49.99, style="fitted", quantity=BUY_STOCK).save()

    def save(self, h: Any) -> None:
        h.save()

    def save_many(self, hats: Sequence[Any]) -> None:
        self.M.add(hats)

    def get(self, id_: str) -> Any:
        return self.M.get(id_)

    def get_many(self, ids: Sequence[str]) -> list[Any]:
        get = self.M.get
        return [get(i) for i in ids]

    def buy(self, id_: str) -> None:
        watch_buy(self.r, self.M.make_primary_key(id_))

    def update(self, id_: str, color: str) -> None:
        self.M.get(id_).update(color=color)


# name -> (adapter, the distribution to import, why it may be missing)
PLAIN: dict[str, tuple[type, str | None]] = {
    "hand-written redis-py": (HandPlain, None),
    "redmodel": (RedmodelPlain, None),
    "walrus": (WalrusPlain, "walrus"),
    "rom": (RomPlain, "rom"),
    "pydantic-redis": (PydanticRedisPlain, "pydantic_redis"),
    "redis-om": (RedisOmPlain, "redis_om"),
}

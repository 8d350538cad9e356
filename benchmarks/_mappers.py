"""The query benchmark's competitors: hand-written redis-py indexes, walrus and rom.

Each implementation is an object with the same methods (``save_one``, ``save_chunk``, the
six queries ``q1``..``q6`` and ``ids``/``prices`` to compare results), bound to its own
logical database on one server. The hand-written one decodes into redmodel's own attrs
``Hat``; walrus and rom return their own typed model instances, as their users get them.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import redis

__all__ = ["HandWritten", "Rom", "Walrus"]


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
        hat = self.Hat
        return [hat(color=d[b"color"].decode(), style=d[b"style"].decode(),
                    price=float(d[b"price"]), quantity=int(d[b"quantity"]), id=i.decode())
                for i, d in zip(ids, replies, strict=True) if d]

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

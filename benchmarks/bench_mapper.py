"""Section 2: redmodel against hand-written redis-py doing the same work, same server, same run.

The hand-written side is what a careful user writes with redis-py alone, including turning
the reply bytes back into a typed attrs object (``int(b"199")``, ``float(...)``, ``.decode()``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import redis
from redis.exceptions import WatchError

import redmodel
from benchmarks._common import Context, Section, delete_prefix, interleaved, pyplot, table
from benchmarks._models import HAT_BY_LAYOUT, HatBlob, HatFlat, HatHash, hat

N_MANY = 1000
BUY_ID = "to-buy"
TARGET_SINGLE = 0.95
TARGET_PIPELINED = 1.0


# ---- hand-written redis-py -------------------------------------------------------------


def hat_mapping(h: Any) -> dict[str, Any]:
    return {"color": h.color, "price": h.price, "style": h.style, "quantity": h.quantity,
            "npurchased": h.npurchased}


def hat_from_hash(cls: type, id_: str, d: dict[bytes, bytes]) -> Any:
    if not d:
        return None
    return cls(id=id_, color=d[b"color"].decode(), price=float(d[b"price"]),
               style=d[b"style"].decode(), quantity=int(d[b"quantity"]),
               npurchased=int(d[b"npurchased"]))


def hash_key(id_: str) -> str:
    return f"rmbench_hat:{id_}"


def flat_keys(id_: str) -> list[str]:
    return [f"rmbench_hatflat:{id_}:{f}" for f in ("color", "price", "style", "quantity",
                                                    "npurchased")]


def hat_from_leaves(id_: str, v: list[bytes | None]) -> Any:
    if v[0] is None:
        return None
    assert v[1] is not None and v[2] is not None and v[3] is not None and v[4] is not None
    return HatFlat(id=id_, color=v[0].decode(), price=float(v[1]), style=v[2].decode(),
                   quantity=int(v[3]), npurchased=int(v[4]))


def blob_key(id_: str) -> str:
    return f"rmbench_hwblob:{id_}"


def hat_from_json(id_: str, raw: bytes | None) -> Any:
    return None if raw is None else HatBlob(id=id_, **json.loads(raw))


# update and increment with redmodel's guarantee (nothing is written when the object is
# missing), the shortest way redis-py offers: a script registered once, called by EVALSHA
UPDATE_EXISTING = ("if redis.call('EXISTS', KEYS[1]) == 0 then return nil end\n"
                   "return redis.call('HSET', KEYS[1], unpack(ARGV))")
INCR_EXISTING = ("if redis.call('EXISTS', KEYS[1]) == 0 then return nil end\n"
                 "return redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])")


class HandWritten:
    """The hat shop written against redis-py alone."""

    def __init__(self, r: redis.Redis) -> None:
        self.r = r
        self._update_existing = r.register_script(UPDATE_EXISTING)
        self._incr_existing = r.register_script(INCR_EXISTING)

    # hash
    def save(self, h: Any) -> None:
        self.r.hset(hash_key(h.id), mapping=hat_mapping(h))

    def save_many(self, hats: list[Any]) -> None:
        pipe = self.r.pipeline(transaction=False)
        for h in hats:
            pipe.hset(hash_key(h.id), mapping=hat_mapping(h))
        pipe.execute()

    def get(self, id_: str) -> Any:
        return hat_from_hash(HatHash, id_, self.r.hgetall(hash_key(id_)))

    def get_many(self, ids: list[str]) -> list[Any]:
        pipe = self.r.pipeline(transaction=False)
        for id_ in ids:
            pipe.hgetall(hash_key(id_))
        return [hat_from_hash(HatHash, i, d) for i, d in zip(ids, pipe.execute(), strict=True)]

    def update(self, id_: str, color: str) -> None:
        self.r.hset(hash_key(id_), "color", color)

    def incr(self, id_: str, amount: int) -> int:
        return int(self.r.hincrby(hash_key(id_), "quantity", amount))

    def update_guarded(self, id_: str, color: str) -> bool:
        """``update`` with redmodel's guarantee: False, nothing written, when the hat is
        missing (``UPDATE_EXISTING`` through ``register_script``)."""
        return self._update_existing(keys=[hash_key(id_)], args=["color", color]) is not None

    def incr_guarded(self, id_: str, amount: int) -> int:
        """``incr`` with redmodel's guarantee: KeyError, nothing written, when the hat is
        missing (``INCR_EXISTING``; the new value passes through a Lua double, so unlike
        redmodel's answer it is exact only below 2**53)."""
        n = self._incr_existing(keys=[hash_key(id_)], args=["quantity", amount])
        if n is None:
            raise KeyError(id_)
        return int(n)

    def buy(self, id_: str) -> None:
        """The redis-py tutorial's buyitem(): WATCH, HGET, MULTI, HINCRBY x2, EXEC, retry."""
        key = hash_key(id_)
        with self.r.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    nleft = int(pipe.hget(key, "quantity"))  # type: ignore[arg-type]
                    if nleft <= 0:
                        pipe.unwatch()
                        raise RuntimeError("sold out")
                    pipe.multi()
                    pipe.hincrby(key, "quantity", -1)
                    pipe.hincrby(key, "npurchased", 1)
                    pipe.execute()
                    return
                except WatchError:
                    continue

    # flat: MSET / MGET of one key per leaf
    def save_flat(self, h: Any) -> None:
        self.r.mset(dict(zip(flat_keys(h.id), hat_mapping(h).values(), strict=True)))

    def save_many_flat(self, hats: list[Any]) -> None:
        pipe = self.r.pipeline(transaction=False)
        for h in hats:
            pipe.mset(dict(zip(flat_keys(h.id), hat_mapping(h).values(), strict=True)))
        pipe.execute()

    def get_flat(self, id_: str) -> Any:
        return hat_from_leaves(id_, self.r.mget(flat_keys(id_)))

    def get_many_flat(self, ids: list[str]) -> list[Any]:
        pipe = self.r.pipeline(transaction=False)
        for id_ in ids:
            pipe.mget(flat_keys(id_))
        return [hat_from_leaves(i, v) for i, v in zip(ids, pipe.execute(), strict=True)]

    # blob: SET / GET of json.dumps
    def save_blob(self, h: Any) -> None:
        self.r.set(blob_key(h.id), json.dumps(hat_mapping(h)))

    def save_many_blob(self, hats: list[Any]) -> None:
        pipe = self.r.pipeline(transaction=False)
        for h in hats:
            pipe.set(blob_key(h.id), json.dumps(hat_mapping(h)))
        pipe.execute()

    def get_blob(self, id_: str) -> Any:
        return hat_from_json(id_, self.r.get(blob_key(id_)))

    def get_many_blob(self, ids: list[str]) -> list[Any]:
        pipe = self.r.pipeline(transaction=False)
        for id_ in ids:
            pipe.get(blob_key(id_))
        return [hat_from_json(i, raw) for i, raw in zip(ids, pipe.execute(), strict=True)]


@redmodel.transaction
def buy(tx: redmodel.transactions.Transaction, hat_id: str) -> None:
    """The same buy with redmodel: WATCH + HGETALL, then MULTI, HINCRBY x2, EXEC."""
    h = tx.get_or_raise(HatHash, hat_id)
    if h.quantity <= 0:
        raise RuntimeError("sold out")
    tx.incr(HatHash, hat_id, "quantity", -1)
    tx.incr(HatHash, hat_id, "npurchased", 1)


# ---- the operations --------------------------------------------------------------------

Op = tuple[str, str, bool, Callable[[], Any], Callable[[], Any]]


def operations(store: redmodel.Store, hw: HandWritten) -> list[Op]:
    """(layout, operation, pipelined?, redmodel call, hand-written call)."""
    bound_buy = buy.bind(store)
    ops: list[Op] = []
    one = {layout: hat(cls, 1) for layout, cls in HAT_BY_LAYOUT.items()}
    many = {layout: [hat(cls, i) for i in range(N_MANY)] for layout, cls in HAT_BY_LAYOUT.items()}
    ids = [str(i) for i in range(N_MANY)]
    hand = {
        "hash": (hw.save, hw.save_many, hw.get, hw.get_many),
        "flat": (hw.save_flat, hw.save_many_flat, hw.get_flat, hw.get_many_flat),
        "blob": (hw.save_blob, hw.save_many_blob, hw.get_blob, hw.get_many_blob),
    }
    for layout, cls in HAT_BY_LAYOUT.items():
        h_save, h_save_many, h_get, h_get_many = hand[layout]
        o, objs = one[layout], many[layout]
        ops += [
            (layout, "save one", False, lambda o=o: store.save(o), lambda f=h_save, o=o: f(o)),
            (layout, f"save many ({N_MANY:,}, pipelined)", True,
             lambda objs=objs: store.save_many(objs), lambda f=h_save_many, objs=objs: f(objs)),
            (layout, "get one", False, lambda cls=cls: store.get(cls, "1"),
             lambda f=h_get: f("1")),
            (layout, f"get many ({N_MANY:,}, pipelined)", True,
             lambda cls=cls: store.get_many(cls, ids), lambda f=h_get_many: f(ids)),
        ]
        if layout == "hash":
            ops += [
                (layout, "partial update (color)", False,
                 lambda: store.update(HatHash, "1", color="white"),
                 lambda: hw.update("1", "white")),
                (layout, "partial update (color), against the same existence check", False,
                 lambda: store.update(HatHash, "1", color="white"),
                 lambda: hw.update_guarded("1", "white")),
                (layout, "atomic increment", False,
                 lambda: store.incr(HatHash, "1", "quantity", 1), lambda: hw.incr("1", 1)),
                (layout, "atomic increment, against the same existence check", False,
                 lambda: store.incr(HatHash, "1", "quantity", 1),
                 lambda: hw.incr_guarded("1", 1)),
                (layout, "transaction buy (WATCH/MULTI)", False,
                 lambda: bound_buy(BUY_ID), lambda: hw.buy(BUY_ID)),
            ]
    return ops


def _prepare(store: redmodel.Store, hw: HandWritten) -> None:
    for layout, cls in HAT_BY_LAYOUT.items():
        objs = [hat(cls, i) for i in range(N_MANY)]
        store.save_many(objs)
        if layout == "blob":
            hw.save_many_blob(objs)
    # outside the ids that "save many" rewrites, so its stock never runs out
    store.save(HatHash(id=BUY_ID, color="black", price=49.99, style="fitted", quantity=10**12))


def run(ctx: Context) -> Section:
    store = ctx.store()
    hw = HandWritten(ctx.client())
    section = Section("2. Mapper overhead: redmodel vs hand-written redis-py")
    try:
        _prepare(store, hw)
        rows = []
        results = []
        for layout, name, pipelined, rm, hand in operations(store, hw):
            samples, inner = (ctx.pick(5, 61), 1) if pipelined else (ctx.pick(5, 101),
                                                                      ctx.pick(20, 100))
            t_rm, t_hw = interleaved([rm, hand], samples, inner)
            r = t_hw / t_rm
            target = TARGET_PIPELINED if pipelined else TARGET_SINGLE
            per = N_MANY if pipelined else 1
            verdict = "met" if r >= target else "**not met**"
            rows.append([layout, name, f"{per / t_rm:,.0f}", f"{per / t_hw:,.0f}",
                         f"**{r:.2f}x**", f"≥ {target:.2f}x {verdict}"])
            results.append((layout, name, per / t_rm, per / t_hw, r, target))
        section.blocks.append(table(
            ["layout", "operation", "redmodel objects/s", "hand-written objects/s",
             "redmodel / hand-written", "target"], rows, "llrrrl"))
        section.blocks.append(
            "Objects per second (operations per second for single-object rows) from medians "
            "of interleaved samples. Ratio > 1: redmodel is faster. Hand-written code: "
            "`HSET mapping=` / `HGETALL` + `int()`/`float()`/`.decode()` into the attrs "
            "class; flat: `MSET`/`MGET` of the leaf keys (no manifest); blob: `SET`/`GET` "
            "of `json.dumps` of the fields; update: plain `HSET` (redmodel's checks the "
            "object exists, in Lua); increment: `HINCRBY`; \"against the same existence "
            "check\": the hand-written side is a script registered with redis-py's "
            "`register_script` (EVALSHA: `EXISTS`, then `HSET` / `HINCRBY`), so the ratio "
            "is redmodel's own cost, the plain rows' is that plus the guarantee's; buy: the "
            "redis-py tutorial's WATCH/HGET/MULTI/HINCRBYx2/EXEC loop.")
        section.data = {"results": results}
        section.plots.append(_plot(ctx, results))
    finally:
        for pattern in ("rmbench_hat:*", "rmbench_hatflat:*", "rmbench_hatblob:*",
                        "rmbench_hwblob:*"):
            delete_prefix(hw.r, pattern)
        store.close()
        hw.r.close()
    return section


def _plot(ctx: Context, results: list[tuple[str, str, float, float, float, float]]) -> Any:
    plt = pyplot()
    labels = [f"{layout}: {name}" for layout, name, *_ in results]
    ys = range(len(results))
    fig, ax = plt.subplots(figsize=(8, 0.38 * len(results) + 1.5))
    ax.barh([y + 0.2 for y in ys], [r[2] for r in results], height=0.4, label="redmodel")
    ax.barh([y - 0.2 for y in ys], [r[3] for r in results], height=0.4,
            label="hand-written redis-py")
    for y, r in zip(ys, results, strict=True):
        ax.text(max(r[2], r[3]) * 1.05, y, f"{r[4]:.2f}x", va="center", fontsize=7)
    ax.set_yticks(list(ys), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("objects per second (log)")
    ax.set_title("redmodel vs hand-written redis-py (ratio = redmodel / hand-written)")
    fig.legend(*ax.get_legend_handles_labels(), loc="lower center", ncol=2, fontsize=8)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    path = ctx.out / "mapper_ops.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

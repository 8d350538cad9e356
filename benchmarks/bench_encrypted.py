"""Section 10: what encryption and blind indexes cost per save and get, side by side.

Four models with the same two string fields (an SSN and an email address), differing only
in how those are stored: plain; plain with a unique index on the SSN and an equality index
on the email (the plaintext in key names, for comparison); encrypted with ``json|fernet``;
encrypted and blind-indexed the same way (unique + equality, HMAC tokens). Every case is
sampled in one interleaved run, so drift on the shared machine hits all of them alike.
"""

from __future__ import annotations

from typing import Any

import attrs

import redmodel
from benchmarks._common import Context, Section, delete_prefix, interleaved, table
from redmodel._models._specs import spec_of

ENC = "json|fernet"


@redmodel.model(prefix="rmbench_enc_plain")
@attrs.define
class Plain:
    name: str
    ssn: str
    email: str
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="rmbench_enc_indexed")
@attrs.define
class PlainIndexed:
    name: str
    ssn: str = redmodel.field(unique=True)
    email: str = redmodel.field(index=True)
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="rmbench_enc_fernet")
@attrs.define
class Encrypted:
    name: str
    ssn: str = redmodel.field(codec=ENC)
    email: str = redmodel.field(codec=ENC)
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="rmbench_enc_blind")
@attrs.define
class Blind:
    name: str
    ssn: str = redmodel.field(codec=ENC, index="blind", unique=True)
    email: str = redmodel.field(codec=ENC, index="blind")
    id: str = redmodel.key_field(generated=False)


ROWS: list[tuple[str, type]] = [
    ("plain", Plain),
    ("plain, indexed (unique + equality; plaintext in key names)", PlainIndexed),
    ("encrypted (`json\\|fernet`)", Encrypted),
    ("encrypted, blind-indexed (unique + equality)", Blind),
]


def _people(cls: type, n: int) -> list[Any]:
    return [cls(f"name{i}", f"{i:03d}-45-{i:04d}", f"user{i}@example.org", id=f"p{i}")
            for i in range(n)]


def _cycle(fn: Any, items: list[Any]) -> Any:
    state = {"i": 0}

    def step() -> None:
        i = state["i"]
        state["i"] = (i + 1) % len(items)
        fn(items[i])

    return step


def run(ctx: Context) -> Section:
    redmodel.codecs.configure_fernet(keys=[redmodel.codecs.FernetTransform.generate_key()])
    redmodel.configure_index_keys(keys=[redmodel.generate_index_key()])
    section = Section("10. Encrypted fields: plain vs encrypted vs blind-indexed")
    store = ctx.store()
    n = ctx.pick(200, 2000)
    cases = []
    for _, cls in ROWS:
        objs = _people(cls, n)
        store.save_many(objs)
        # force=True: an indexed (tracked) model would otherwise send nothing for an
        # object saved unchanged; every row sends a whole save
        cases.append(_cycle(lambda o: store.save(o, force=True), objs))
        cases.append(_cycle(lambda o, cls=cls: store.get(cls, o.id), objs))
    times = interleaved(cases, ctx.pick(9, 31), ctx.pick(30, 200), warmup=1)
    base = times[0] + times[1]
    rows = []
    for i, (label, _) in enumerate(ROWS):
        save, get = times[2 * i], times[2 * i + 1]
        rows.append([label, f"{1 / save:,.0f}", f"{1 / get:,.0f}", f"{1 / (save + get):,.0f}",
                     f"**{base / (save + get):.2f}x**"])
    section.blocks.append(table(
        ["fields", "save one /s", "get one /s", "save + get /s", "vs plain"], rows))
    section.blocks.append(
        "Two string fields per object (an SSN and an email address) plus a plain name; "
        f"{n} objects saved whole (`save(obj, force=True)`) and read back (`get`) in turn, "
        "one round trip each, medians of interleaved samples. Encryption costs a Fernet "
        "encrypt per field and save and a decrypt per field and get; a blind index adds an "
        "HMAC per value (two during an index-key rotation for the unique one) to the work "
        "of a plain index.")
    section.data = {"times": dict(zip([f"{r[0]} {op}" for r in ROWS for op in ("save", "get")],
                                      times, strict=True))}
    for _, cls in ROWS:
        delete_prefix(ctx.client(), f"{spec_of(cls).prefix}:*")
    store.close()
    return section

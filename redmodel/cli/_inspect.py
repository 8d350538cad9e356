"""``redmodel inspect``: what each model declares, and what is stored for it."""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence
from typing import Any

import click
from rich.console import Console

from redmodel._errors import RedmodelError, SchemaConflictError
from redmodel._indexes import _registry as registry
from redmodel._models._specs import FieldSpec, ModelSpec, spec_of
from redmodel._models._types import BadValueError
from redmodel._stores._sync import Store
from redmodel.cli._common import OK, PROBLEMS, Env, common_options, model_label, reads
from redmodel.cli._describe import describe

__all__ = ["command"]

MARKER = b"\x00"  # the field an object whose every field is None keeps (hash layout)


@click.command("inspect")
@common_options
@click.option("--sample", type=click.IntRange(1, 100_000), default=100, show_default=True,
              help="How many objects (drawn at random during the SCAN) are read for the "
                   "memory estimate, the TTL spread and the schema check.")
@click.option("--seed", type=int, default=None, help="Seed of the random sample.")
def command(env: Env, sample: int, seed: int | None) -> int:
    """Per model: key prefix, layout, codecs, indexes, TTL, how many objects are stored
    (a full SCAN), their memory (MEMORY USAGE of a sample, extrapolated: an estimate), their
    TTL spread, and the schema against what is stored: sampled objects that do not decode,
    with the first error of each kind (errors never contain an encrypted value).

    Also the model registry's record of the prefix: its owner, each index's state (ready,
    building: added while objects were stored without it, `redmodel reindex` builds it;
    stale: no longer declared, its entries still stored) and why a store would refuse this
    model. Inspect only reads: it never registers a model.

    Exits 1 when a sampled object does not decode, or the registry would refuse a model."""
    store = env.store(registry=False)
    rng = random.Random(seed)
    reports = [_inspect(env, store, cls, sample, rng) for cls in env.models()]
    failed = sum(r["schema"]["failed"] + len(r["registry"]["problems"]) for r in reports)
    env.emit({"ok": failed == 0, "models": reports}, lambda out: _print(out, reports))
    return PROBLEMS if failed else OK


def _inspect(env: Env, store: Store, cls: type, size: int, rng: random.Random
             ) -> dict[str, Any]:
    spec = spec_of(cls)
    count, keys = _count_and_sample(env, store, cls, size, rng)
    report: dict[str, Any] = {"model": model_label(cls), **describe(cls), "count": count}
    report["memory"] = _memory(store, spec, keys, count)
    report["ttl_spread"] = _ttl_spread(store, keys)
    report["schema"] = _schema(store, spec, keys)
    report["registry"] = _registry_state(store, spec)
    return report


def _registry_state(store: Store, spec: ModelSpec) -> dict[str, Any]:
    """What the model registry records for the model's prefix, and whether a store's
    first use of this model would be refused (read only: inspect never registers)."""
    key = registry.registry_key(spec.prefix)
    try:
        record = store.run(registry.read_plan(key))
    except SchemaConflictError as e:  # an unreadable record: a problem, not a crash
        return {"key": key, "registered": True, "owner": e.owner or None,
                "this_model": False, "indexes": {}, "problems": [str(e)]}
    if record is None:
        return {"key": key, "registered": False, "owner": None, "this_model": False,
                "indexes": {}, "problems": []}
    owner = registry.owner_of(spec.cls)
    problems = [] if record.owner == owner else [
        f"the prefix belongs to {record.owner}: a store's first use of this model is refused"]
    schema = registry.describe(spec)
    text = registry.schema_text(schema)
    # a schema the record held and replaced: an older version (a rolling deploy)
    older = text != record.text and registry.was_field(text) in record.older
    if record.schema:
        problems += registry.problems_of(record.schema, schema, older)
    return {"key": key, "registered": True, "owner": record.owner,
            "this_model": record.owner == owner, "older_version": older,
            "indexes": dict(sorted(record.states.items())), "problems": problems}


def _count_and_sample(env: Env, store: Store, cls: type, size: int, rng: random.Random
                      ) -> tuple[int, list[str]]:
    """Every key of the model counted (SCAN), and a uniform random sample of them
    (reservoir sampling: memory bounded by the sample, whatever the count)."""
    sample: list[str] = []
    count = 0
    with env.progress_bar() as bar:
        task = bar.add_task(f"scan {cls.__name__}", total=None)
        for key in store.scan_keys(cls):
            count += 1
            if len(sample) < size:
                sample.append(key)
            else:
                at = rng.randrange(count)
                if at < size:
                    sample[at] = key
            if count % 1000 == 0:
                bar.update(task, completed=count)
        bar.update(task, completed=count)
    return count, sample


def _pipelined(store: Store, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
    """Read-only commands in one round trip."""
    return reads(store, commands)


def _memory(store: Store, spec: ModelSpec, keys: list[str], count: int) -> dict[str, Any]:
    """MEMORY USAGE of the sampled objects (every key of one: a flat object's leaves too),
    extrapolated to the count."""
    if not keys:
        return {"estimate": True, "sampled": 0, "bytes_per_object": None, "total_bytes": 0}
    object_keys = [[k] for k in keys]
    if spec.layout == "flat":  # the manifest at the object key names its leaves
        manifests = _pipelined(store, [("GET", k) for k in keys])
        for group, manifest in zip(object_keys, manifests, strict=True):
            if isinstance(manifest, bytes):
                suffixes = manifest.decode("utf-8", "replace").split("\n")[1:]
                group.extend(f"{group[0]}{spec.delimiter}{s}" for s in suffixes)
    flat = [k for group in object_keys for k in group]
    sizes = _pipelined(store, [("MEMORY", "USAGE", k) for k in flat])
    by_key = {k: s for k, s in zip(flat, sizes, strict=True) if isinstance(s, int)}
    per_object = [sum(by_key.get(k, 0) for k in group) for group in object_keys
                  if group[0] in by_key]
    if not per_object:
        return {"estimate": True, "sampled": 0, "bytes_per_object": None, "total_bytes": 0}
    mean = statistics.fmean(per_object)
    return {"estimate": True, "sampled": len(per_object), "bytes_per_object": round(mean),
            "total_bytes": round(mean * count)}


def _ttl_spread(store: Store, keys: list[str]) -> dict[str, Any]:
    """How many sampled objects never expire, and min/median/max seconds of the others."""
    replies = _pipelined(store, [("PTTL", k) for k in keys])
    ms = [int(r) for r in replies if isinstance(r, int) and r >= 0]
    none = sum(1 for r in replies if r == -1)
    seconds = sorted(m / 1000 for m in ms)
    return {"sampled": none + len(ms), "none": none,
            "min": seconds[0] if seconds else None,
            "median": statistics.median(seconds) if seconds else None,
            "max": seconds[-1] if seconds else None}


def _schema(store: Store, spec: ModelSpec, keys: list[str]) -> dict[str, Any]:
    """Read every sampled object through the model; group the failures by kind."""
    kinds: dict[tuple[str, str | None, str | None], dict[str, Any]] = {}
    ok = 0
    read = 0
    for key in keys:
        text = spec.id_of_key(key)
        if text is None:
            continue
        try:
            assert spec.key.decode is not None
            found = store.get(spec.cls, spec.key.decode(text.encode("utf-8", "surrogateescape")))
        except (RedmodelError, BadValueError) as e:
            read += 1
            what = (type(e).__name__, getattr(e, "field", None), getattr(e, "codec", None))
            kind = kinds.setdefault(what, {"error": what[0], "field": what[1],
                                           "codec": what[2], "count": 0, "first_key": key,
                                           "first_error": " ".join(str(e).split())})
            kind["count"] += 1
            continue
        if found is not None:  # else it went away since the SCAN
            read += 1
            ok += 1
    report: dict[str, Any] = {"sampled": read, "ok": ok, "failed": read - ok,
                              "errors": list(kinds.values())}
    if spec.layout == "hash":
        unknown, renamed = _unknown_fields(store, spec, keys)
        report["unknown_stored_fields"] = unknown
        report["renamed_stored_fields"] = renamed
    return report


def _stored_names(fields: tuple[FieldSpec, ...], prefix: str, delimiter: str) -> set[bytes]:
    names: set[bytes] = set()
    for f in fields:
        name = prefix + f.stored
        if f.kind == "struct":
            names |= _stored_names(f.children, name + delimiter, delimiter)
        else:
            names.add(name.encode("utf-8"))
    return names


def _old_names(fields: tuple[FieldSpec, ...], prefix: str, now: str, delimiter: str
               ) -> dict[bytes, str]:
    """Every stored name a field was renamed from (old_names=), nested leaves included
    -> the stored name it is read as now."""
    out: dict[bytes, str] = {}
    for f in fields:
        for stored in (f.stored, *f.old_stored):
            was, is_now = prefix + stored, now + f.stored
            if f.kind == "struct":
                out |= _old_names(f.children, was + delimiter, is_now + delimiter, delimiter)
            elif was != is_now:
                out[was.encode("utf-8")] = is_now
    return out


def _unknown_fields(store: Store, spec: ModelSpec, keys: list[str]
                    ) -> tuple[dict[str, int], dict[str, dict[str, Any]]]:
    """Hash fields of sampled objects that the model does not declare (a field removed
    since they were written), with how many sampled objects hold each; and those stored
    under a name a field was renamed from (old_names=: read as that field, moved by the
    object's next save), with the field's stored name and the count."""
    known = _stored_names(spec.fields, "", spec.delimiter) | {MARKER}
    old = _old_names(spec.fields, "", "", spec.delimiter)
    found: dict[str, int] = {}
    renamed: dict[str, dict[str, Any]] = {}
    for names in _pipelined(store, [("HKEYS", k) for k in keys]):
        if not isinstance(names, list):
            continue
        for name in set(names) - known:
            text = name.decode("utf-8", "backslashreplace")
            if name in old:
                entry = renamed.setdefault(text, {"field": old[name], "count": 0})
                entry["count"] += 1
            else:
                found[text] = found.get(text, 0) + 1
    return found, renamed


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} TB"  # pragma: no cover - the loop returns


def _print(out: Console, reports: list[dict[str, Any]]) -> None:
    def line(text: str) -> None:
        out.print(text, markup=False)

    for r in reports:
        line(f"{r['model']}")
        line(f"  prefix {r['prefix']!r}, layout {r['layout']}, keys like {r['key_example']}"
             + (f", model codec {r['codec']}" if r["codec"] else ""))
        fields = ", ".join(
            f"{f['name']}: {f['type']}" + (f" [{f['codec']}]" if f["codec"] else "")
            + (" (encrypted)" if f["encrypted"] else "") for f in r["fields"])
        line(f"  fields: {fields or '-'}")
        ix = ", ".join(f"{i['field']} ({'+'.join(i['kinds'])})" for i in r["indexes"])
        uq = ", ".join("+".join(u) for u in r["unique"])
        line(f"  indexes: {ix or '-'}" + (f"; unique: {uq}" if uq else ""))
        ttl = "none" if r["ttl"] is None else f"{r['ttl']:g} s"
        line(f"  model ttl: {ttl}; buckets: {r['buckets'] or '-'}")
        for warning in r["warnings"]:
            line(f"  warning: {warning}")
        line(f"  objects: {r['count']:,}")
        m = r["memory"]
        if m["bytes_per_object"] is not None:
            line(f"  memory: ~{_size(m['total_bytes'])} (estimate: MEMORY USAGE of "
                 f"{m['sampled']} sampled objects, {_size(m['bytes_per_object'])} each on "
                 "average, times the count)")
        t = r["ttl_spread"]
        if t["sampled"]:
            spread = f"{t['none']} without expiry"
            if t["min"] is not None:
                spread += (f"; expiring in min {t['min']:,.1f} s, median "
                           f"{t['median']:,.1f} s, max {t['max']:,.1f} s")
            line(f"  ttl of {t['sampled']} sampled: {spread}")
        s = r["schema"]
        if s["sampled"]:
            if not s["failed"]:
                line(f"  schema: all {s['sampled']} sampled objects decode")
            else:
                line(f"  schema: {s['failed']} of {s['sampled']} sampled objects do not "
                     "decode")
                for e in s["errors"]:
                    line(f"    {e['count']} x {e['error']}"
                         + (f" in field {e['field']}" if e["field"] else "")
                         + f"; first at {e['first_key']}: {e['first_error']}")
        g = r["registry"]
        if not g["registered"]:
            line(f"  registry {g['key']}: not registered yet (a store's first use records it)")
        else:
            owner = g["owner"] + (" (this model)" if g["this_model"] else "") + (
                ", an older version of it: the record keeps the newest schema"
                if g.get("older_version") else "")
            states = ", ".join(f"{n.split(':', 1)[1]} {v}" if n.startswith("index:")
                               else f"{n} {v}" for n, v in g["indexes"].items())
            line(f"  registry {g['key']}: owner {owner}; indexes: {states or '-'}")
        for problem in g["problems"]:
            line(f"  registry refuses this model: {problem}")
        unknown = s.get("unknown_stored_fields")
        if unknown:
            listed = ", ".join(f"{k!r} ({v})" for k, v in sorted(unknown.items()))
            line(f"  stored fields the model does not declare: {listed}")
        renamed = s.get("renamed_stored_fields")
        if renamed:
            listed = ", ".join(f"{k!r} -> {v['field']!r} ({v['count']})"
                               for k, v in sorted(renamed.items()))
            line(f"  stored under old names (renamed, pending rewrite): {listed}")

"""Section 3: encode + decode time and stored bytes of every serializer and chain."""

from __future__ import annotations

from typing import Any

import redmodel
from benchmarks._common import Context, Section, fmt_time, interleaved, pyplot, table
from benchmarks._models import LARGE_MESSAGE, Hat, Restaurant, hat, restaurant_484272

SERIALIZERS = ("json", "yaml", "msgpack")
TRANSFORMS = ("", "|bz2", "|zlib", "|lzma", "|fernet")
STACKS = ("json|zlib|fernet", "msgpack|bz2|fernet", "msgpack|zlib|fernet", "yaml|lzma|fernet")


def chains() -> list[str]:
    return [s + t for s in SERIALIZERS for t in TRANSFORMS] + list(STACKS)


def values() -> list[tuple[str, Any, Any]]:
    """(name, value, type)."""
    return [
        ("small: the hat", hat(Hat, 1), Hat),
        ("nested: restaurant_484272", restaurant_484272(), Restaurant),
        (f"large: {len(LARGE_MESSAGE):,}-char message", LARGE_MESSAGE, str),
    ]


def run(ctx: Context) -> Section:
    redmodel.codecs.configure_fernet(keys=[redmodel.codecs.FernetTransform.generate_key()])
    section = Section("3. Codecs: encode + decode time and stored bytes")
    results: dict[str, list[tuple[str, float, int]]] = {}
    for vname, value, tp in values():
        large = tp is str
        fns = []
        sizes = []
        for name in chains():
            c = redmodel.codecs.codec(name)
            enc, dec = c.encoder(tp), c.decoder(tp)
            stored = enc(value)
            assert dec(stored) == value, name
            sizes.append(len(stored))
            fns.append(lambda enc=enc, dec=dec, value=value: dec(enc(value)))
        samples = ctx.pick(3, 9) if large else ctx.pick(5, 31)
        inner = 1 if large else ctx.pick(5, 50)
        times = interleaved(fns, samples, inner, warmup=1)
        results[vname] = list(zip(chains(), times, sizes, strict=True))
    header = ["chain"]
    for vname in results:
        header += [f"{vname}: µs", "bytes"]
    rows = []
    for i, name in enumerate(chains()):
        row = [f"`{name}`"]
        for vals in results.values():
            _, t, size = vals[i]
            row += [fmt_time(t), f"{size:,}"]
        rows.append(row)
    header = ["chain"] + [h.replace(": µs", ": encode+decode") for h in header[1:]]
    section.blocks.append(table(header, rows))
    raw = {v[0]: v for v in values()}
    section.blocks.append(
        "Median time of one encode followed by one decode (through the chain's per-type "
        "`encoder`/`decoder`), and the stored size including redmodel's chain header. "
        f"Plain sizes for scale: the hat is {len(repr(raw['small: the hat'][1]))} "
        "characters as a repr; the message is "
        f"{len(LARGE_MESSAGE.encode()):,} bytes of UTF-8.")
    section.data = {"results": results}
    section.plots.append(_plot(ctx, results))
    return section


def _plot(ctx: Context, results: dict[str, list[tuple[str, float, int]]]) -> Any:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(results), figsize=(13, 4.8))
    for ax, (vname, vals) in zip(axes, results.items(), strict=True):
        for name, t, size in vals:
            ax.scatter(size, t * 1e6, s=14)
            ax.annotate(name, (size, t * 1e6), fontsize=5)
        if max(size for _n, _t, size in vals) > 10 * min(size for _n, _t, size in vals):
            ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(vname, fontsize=9)
        ax.set_xlabel("stored bytes")
        ax.set_ylabel("encode + decode, µs")
    fig.suptitle("Codec chains: time vs stored size (lower left is better)")
    fig.tight_layout()
    path = ctx.out / "codecs.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

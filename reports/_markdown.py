"""A Markdown summary of a run (to paste into a pull request)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reports._compare import compare_runs
from reports._data import compression_rows, device_plot_data, layer_table
from reports._format import fmt_mb, fmt_ms, fmt_params, fmt_pct, fmt_quality
from reports._html import headline
from reports._run import Run

__all__ = ["markdown", "write_markdown"]


def write_markdown(run: Run, path: str | Path, *, compare: Run | None = None) -> Path:
    """Write :func:`markdown` of the run to ``path`` and return the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    from compress.atomic import write_text

    write_text(out, markdown(run, compare=compare))  # temp file + rename
    return out


def markdown(run: Run, *, compare: Run | None = None) -> str:
    """The summary as Markdown: headline, chosen model per device, front, heads, compression, config."""
    parts = [f"# compress report: {_esc(run.name)}", "", _esc(headline(run)), ""]
    if compare is not None:
        cmp = compare_runs(run, compare)
        parts += [f"## Comparison: {_esc(cmp.name_a)} vs {_esc(cmp.name_b)}", ""]
        parts += _table(["figure", cmp.name_a, cmp.name_b, "change (B - A)"], [r.cells() for r in cmp.rows])
    parts += _chosen_section(run)
    parts += _front_section(run)
    parts += _heads_section(run)
    parts += _compression_section(run)
    parts += ["## Config", "", _code(run.meta.get("command", "")), ""]
    parts += _table(["setting", "value"], [(k, v) for k, v in run.config.items() if k != "space"])
    return "\n".join(parts)


def _chosen_section(run: Run) -> list[str]:
    """The chosen model's architecture and its latency, memory and disk on every device."""
    dev = device_plot_data(run)
    parts = [
        f"## Chosen model (trial {run.card['trial']}, {_esc(run.card['quant'])})",
        "",
        _code(run.card["arch"]),
        "",
    ]
    parts += _table(
        ["device", "latency", "peak memory", "disk", "source"],
        [
            (d, fmt_ms(lat), fmt_mb(mem), fmt_mb(disk), prov)
            for d, lat, mem, disk, prov in zip(
                dev.device, dev.latency_ms, dev.peak_memory_mb, dev.disk_mb, dev.provenance, strict=True
            )
        ],
    )
    return parts + [f"Budget: {run.budget_ms:g} ms on the slowest device.", ""]


def _front_section(run: Run) -> list[str]:
    """The Pareto front, one row per candidate, fastest first."""
    parts = [f"## Pareto front ({len(run.front)})", "", _esc(run.quality_note), ""]
    front = run.front.sort_values("worst_latency_ms").to_dict("records")
    return parts + _table(
        ["trial", "quality", "worst latency", "worst device", "feasible", "disk", "quant"],
        [
            (
                r["trial"],
                fmt_quality(r["quality"]),
                fmt_ms(r["worst_latency_ms"]),
                r["worst_device"],
                "yes" if r["feasible"] else "no",
                fmt_mb(r["disk_mb"]),
                r["quant"],
            )
            for r in front
        ],
    )


def _heads_section(run: Run) -> list[str]:
    """Each head's own cost on the layer table's device, and the ops that fall back off the Neural Engine."""
    layers = layer_table(run)
    parts = [f"## Per-head cost on {_esc(layers.device)}", ""]
    parts += _table(
        ["head", "latency", "share", "params", "disk"],
        [
            (h.head, fmt_ms(h.ms), fmt_pct(100 * h.share), fmt_params(h.params), fmt_mb(h.disk_mb))
            for h in layers.heads
        ],
    )
    fallbacks = [row[0] for row, fb in zip(layers.rows, layers.fallback, strict=True) if fb]
    if fallbacks:
        parts += [f"Neural Engine fallbacks: {', '.join(_code(n) for n in fallbacks)}", ""]
    return parts


def _compression_section(run: Run) -> list[str]:
    """The compression steps (scheme, pruning, size, quality), or nothing when the run has none."""
    steps = compression_rows(run)
    if not steps:
        return []
    return ["## Compression", ""] + _table(
        ["scheme", "pruned", "params", "disk", "quality", "change"],
        [
            (
                s.scheme,
                f"{s.prune:.0%}",
                fmt_params(s.params),
                fmt_mb(s.disk_mb),
                fmt_quality(s.quality),
                "—" if s.quality_change is None else f"{s.quality_change:+.2f}",
            )
            for s in steps
        ],
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(_esc(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_esc(v) for v in row) + " |" for row in rows]
    return [*lines, ""]


def _esc(value: Any) -> str:
    """Text safe in Markdown: pipes and emphasis/link/code marks escaped, newlines folded, HTML neutralised."""
    text = "—" if value is None else str(value)
    text = text.replace("\\", "\\\\").replace("\n", " ").replace("<", "&lt;").replace(">", "&gt;")
    return re.sub(r"([|*_\[\]`#])", r"\\\1", text)


def _code(value: Any) -> str:
    """Inline code outside tables: backticks and newlines cannot break out of the span."""
    return "`" + str(value).replace("`", "'").replace("\n", " ") + "`"

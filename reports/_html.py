"""The self-contained HTML report: plotly figures (plotly.js inlined once) and escaped, sortable tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reports import _figures
from reports._compare import Comparison, compare_runs
from reports._data import (
    compression_rows,
    device_plot_data,
    front_plot_data,
    hypervolume_plot_data,
    layer_table,
    provenance_label,
)
from reports._format import (
    fmt,
    fmt_chance,
    fmt_interval,
    fmt_mb,
    fmt_ms,
    fmt_params,
    fmt_pct,
    fmt_quality,
    is_missing,
)
from reports._page import Cell, page, para, pre, section, table
from reports._run import Run

__all__ = ["headline", "write_html"]

_PROVENANCE_NOTE = (
    "measured: timed on the device itself (or this host); calibrated ± error: a device profile fitted to "
    "measured or published latencies, with the fit's mean absolute error; spec-derived: computed from the "
    "device's published peak rates and bandwidth, with no measurement behind it."
)


def write_html(run: Run, path: str | Path, *, compare: Run | None = None) -> Path:
    """Write the run's report to ``path`` (one file, opens offline) and return the path.

    With ``compare``, a section puts the two runs side by side and overlays both fronts.
    """
    out = Path(path)
    figures = _Figures()
    body = [] if compare is None else [_compare_section(compare_runs(run, compare), run, compare, figures)]
    body += [
        _front_section(run, figures),
        _hypervolume_section(run, figures),
        _device_section(run, figures),
        _layer_section(run, figures),
        _compression_section(run),
        _provenance_section(run),
        _config_section(run),
    ]
    header = [headline(run), f"command: {run.meta.get('command', '—')}", _times(run)]
    out.parent.mkdir(parents=True, exist_ok=True)
    from compress.atomic import write_text

    write_text(out, page(title=f"compress report: {run.name}", header_lines=header, body=body))
    return out


def headline(run: Run) -> str:
    """One sentence: the chosen model, its quality and worst latency against the budget and the baseline."""
    card = run.card
    slow = run.slowest_device
    lat = float(card["devices"][slow]["latency_ms"])
    fits = "within" if lat <= run.budget_ms else "OVER"
    text = (
        f"Chosen: trial {card['trial']} ({card['quant']}), "
        f"quality {fmt_quality(card['quality']['aggregate'])}, "
        f"{fmt_ms(lat)} on {slow} ({fits} the {run.budget_ms:g} ms budget)"
    )
    base = card.get("baseline")
    if base:
        which = (
            "best baseline within budget"
            if base.get("meets_budget", True)
            else "closest baseline (over budget)"
        )
        text += f"; {which}: {base['name']} at quality {fmt_quality(base['quality'])}, "
        text += f"{fmt_ms(base['worst_latency_ms'])}"
        if "training" in base:  # both trained the same way, scored on the test split
            gain = float(card["quality"]["aggregate"]) - float(base["quality"])
            text += (
                f" ({gain:+.2f} quality on the test split, both trained {base['training']['steps']} steps)"
            )
        else:  # an older card: the baseline was not fine-tuned, compare before the chosen one's fine-tune
            before = (card.get("quality_before_finetune") or card["quality"])["aggregate"]
            text += f" ({float(before) - float(base['quality']):+.2f} quality before fine-tuning)"
    else:
        text += "; no hand-scaled baseline meets the budget"
    if card.get("verdict") and card.get("baseline"):
        text += f" Verdict: {card['verdict']}"
    note = ((card.get("training") or {}).get("plan") or {}).get("note")
    if note:  # the final training ran its floor: the model shipped is barely trained
        text += f". Note: {note}"
    return text + "."


class _Figures:
    """Renders figures to HTML fragments; the first one carries the plotly.js bundle, the rest reuse it."""

    def __init__(self) -> None:
        self.count = 0

    def html(self, fig: Any, div_id: str) -> str:
        self.count += 1
        return fig.to_html(
            full_html=False,
            include_plotlyjs=self.count == 1,
            div_id=div_id,
            config={"displaylogo": False, "responsive": True},
        )


def _front_section(run: Run, figures: _Figures) -> str:
    data = front_plot_data(run)
    prov = run.provenance
    q_cols = [c for c in run.front.columns if c.startswith("q.")]
    header = ["trial", "quality", "worst latency", "worst device", "feasible"]
    header += [f"latency {d} ({provenance_label(prov.get(d, {}))})" for d in run.devices]
    header += ["peak memory (max)", "disk", "params", "quant", *q_cols, "arch"]
    rows, classes = [], []
    for rec in run.front.sort_values("worst_latency_ms").to_dict("records"):
        mem = max(float(rec[f"peak_memory_mb.{d}"]) for d in run.devices)
        row = [
            Cell(str(rec["trial"]), float(rec["trial"])),
            _num(rec["quality"], fmt_quality),
            _num(rec["worst_latency_ms"], fmt_ms),
            str(rec["worst_device"]),
            fmt(bool(rec["feasible"])),
        ]
        row += [_num(rec[f"latency_ms.{d}"], fmt_ms) for d in run.devices]
        row += [
            _num(mem, fmt_mb),
            _num(rec["disk_mb"], fmt_mb),
            _num(rec["params"], fmt_params),
            str(rec["quant"]),
        ]
        row += [_num(rec[c], fmt) for c in q_cols] + [str(rec["arch"])]
        rows.append(row)
        chosen = int(rec["trial"]) == data.chosen_trial
        classes.append("chosen" if chosen else ("" if rec["feasible"] else "infeasible"))
    return section(
        "front",
        f"Pareto front ({len(rows)} candidates; chosen trial {data.chosen_trial} highlighted)",
        figures.html(_figures.front_figure(data), "pareto-plot"),
        *([para(f"Budget use: {run.card['budget']['verdict']}.")] if run.card.get("budget") else []),
        para(run.quality_note),
        para(
            "Colour: disk size; marker size: peak memory on the worst device; hollow markers: over budget. "
            "Click a column heading to sort.",
            cls="note",
        ),
        table(header, rows, table_id="front-table", sortable=True, row_classes=classes),
        _baseline_table(run),
    )


def _baseline_table(run: Run) -> str:
    rows = [
        [
            str(r["name"]),
            _num(r["quality"], fmt_quality),
            _num(r["worst_latency_ms"], fmt_ms),
            str(r["worst_device"]),
            fmt(bool(r["feasible"])),
            _num(r["disk_mb"], fmt_mb),
        ]
        for r in run.baselines.to_dict("records")
    ]
    header = ["baseline", "quality", "worst latency", "worst device", "feasible", "disk"]
    return "<h3>Hand-scaled MobileNetV3 baselines (same scorer)</h3>" + table(
        header, rows, table_id="baseline-table", sortable=True
    )


def _hypervolume_section(run: Run, figures: _Figures) -> str:
    data = hypervolume_plot_data(run)
    return section(
        "hypervolume", "Hypervolume history", figures.html(_figures.hypervolume_figure(data), "hv-plot")
    )


def _device_section(run: Run, figures: _Figures) -> str:
    data = device_plot_data(run)
    devs = run.card["devices"]
    n = len(data.device)
    lo, hi = data.latency_p10_ms or [None] * n, data.latency_p90_ms or [None] * n
    chance = data.budget_confidence or [None] * n
    rows = [
        [
            d,
            _num(lat, fmt_ms),
            fmt_interval(a, b),
            fmt_chance(p),
            _num(devs[d]["peak_memory_mb"], fmt_mb),
            _num(devs[d]["disk_mb"], fmt_mb),
            _num(devs[d].get("weights_mb"), fmt_mb),
            prov,
        ]
        for d, lat, prov, a, b, p in zip(
            data.device, data.latency_ms, data.provenance, lo, hi, chance, strict=True
        )
    ]
    header = [
        "device",
        "latency",
        "latency p10-p90",
        "P(within budget)",
        "peak memory",
        "disk",
        "weights",
        "source",
    ]
    budgets = f"Budgets: latency {run.budget_ms:g} ms on every device"
    if data.confidence is not None:
        budgets += (
            f", held on the {100 * data.confidence:.0f}th percentile of each device's latency interval "
            "(held-out errors of its calibration)"
        )
    budgets += "".join(
        f"; {k.replace('_mb', '')} {data_v:g} MB"
        for k, data_v in (("memory_mb", data.memory_budget_mb), ("disk_mb", data.disk_budget_mb))
        if data_v is not None
    )
    return section(
        "devices",
        f"Chosen model (trial {run.card['trial']}) per device",
        para(f"arch: {run.card['arch']}  quant: {run.card['quant']}"),
        figures.html(_figures.device_figure(data), "device-plot"),
        para(budgets + "."),
        table(header, rows, table_id="device-table", sortable=True),
        _artifact_table(run),
    )


def _artifact_table(run: Run) -> str:
    artifacts = run.card.get("artifacts") or {}
    if not artifacts:
        return ""
    rows = []
    for name, info in artifacts.items():
        info = info if isinstance(info, dict) else {"note": info}
        extra = "; ".join(
            f"{k}: {v}" for k, v in info.items() if k not in ("disk_mb_actual", "disk_mb_predicted")
        )
        rows.append(
            [
                name,
                _num(info.get("disk_mb_predicted"), fmt_mb),
                _num(info.get("disk_mb_actual"), fmt_mb),
                extra,
            ]
        )
    return "<h3>Artifacts (predicted vs actual size on disk)</h3>" + table(
        ["file", "predicted disk", "actual disk", "note"], rows, table_id="artifact-table"
    )


def _layer_section(run: Run, figures: _Figures) -> str:
    data = layer_table(run)
    heads = [
        [
            h.head,
            str(h.layers),
            _num(h.ms, fmt_ms),
            _num(100 * h.share, fmt_pct),
            _num(h.flops, fmt),
            _num(h.params, fmt_params),
            _num(h.disk_mb, fmt_mb),
        ]
        for h in data.heads
    ]
    units = ", ".join(f"{u} {fmt_ms(ms)}" for u, ms in data.unit_ms.items())
    rows = []
    for row, fb in zip(data.rows, data.fallback, strict=True):
        name, op, head, unit, ms, flops, nbytes, shapes = row
        rows.append(
            [
                name,
                op,
                head,
                unit + (" (fallback)" if fb else ""),
                _num(ms, fmt_ms),
                _num(flops, fmt),
                _num(nbytes, fmt),
                shapes,
            ]
        )
    n_fb = sum(data.fallback)
    flag = (
        f"{n_fb} layer(s) fall back from the Neural Engine (rows in red)."
        if n_fb
        else "No Neural Engine fallbacks."
    )
    return section(
        "layers",
        f"Per-head and per-layer cost on the slowest device ({data.device}, {fmt_ms(data.total_ms)} in all, "
        f"{provenance_label(run.provenance.get(data.device, {}))})",
        figures.html(_figures.head_figure(data), "head-plot"),
        table(
            ["head", "layers", "latency", "share", "flops", "params", "disk"], heads, table_id="head-table"
        ),
        para(f"Time per compute unit: {units}. {flag}", cls="flag" if n_fb else "note"),
        table(
            ["layer", "op", "head", "unit", "latency", "flops", "bytes", "shapes"],
            rows,
            table_id="layer-table",
            sortable=True,
            row_classes=["fallback" if fb else "" for fb in data.fallback],
        ),
    )


def _compression_section(run: Run) -> str:
    steps = compression_rows(run)
    rows = [
        [
            s.scheme,
            f"{s.prune:.0%}",
            _num(s.params, fmt_params),
            _num(s.disk_mb, fmt_mb),
            _num(s.quality, fmt_quality),
            _num(s.quality_change, lambda v: f"{v:+.2f}"),
        ]
        for s in steps
    ]
    parts = (
        [
            table(
                ["scheme", "pruned", "params", "disk", "quality", "quality change"],
                rows,
                table_id="compression-table",
            )
        ]
        if rows
        else [para("The card records no compression steps.")]
    )
    before = (run.card.get("quality_before_finetune") or {}).get("aggregate")
    after = run.card["quality"]["aggregate"]
    if before is not None:
        parts.append(
            para(
                f"Quality before fine-tuning {fmt_quality(before)}, after {fmt_quality(after)} "
                f"({float(after) - float(before):+.2f})."
            )
        )
    tasks = run.card["quality"].get("tasks") or {}
    task_rows = [[t, k, _num(v, fmt)] for t, metrics in tasks.items() for k, v in (metrics or {}).items()]
    if task_rows:
        parts.append(table(["task", "metric", "value"], task_rows, table_id="task-table"))
    return section("compression", "Compression summary", *parts)


def _provenance_section(run: Run) -> str:
    rows = [
        [d, str(p.get("source") or "unknown"), _num(p.get("error_pct"), fmt_pct), provenance_label(p)]
        for d, p in run.provenance.items()
    ]
    return section(
        "provenance",
        "Where each predicted figure comes from",
        para(_PROVENANCE_NOTE, cls="note"),
        table(["device", "source", "error", "shown as"], rows, table_id="provenance-table"),
        para(
            "Apple device figures are predictions when the run was made off macOS; disk sizes of written "
            "artifacts are measured (see the artifact table).",
            cls="note",
        ),
    )


def _config_section(run: Run) -> str:
    config = {k: v for k, v in run.config.items() if k != "space"}
    rows = [[k, _plain_value(v)] for k, v in config.items()]
    rows += [[f"versions.{k}", str(v)] for k, v in (run.meta.get("versions") or {}).items()]
    rows += [[f"supernet.{k}", str(v)] for k, v in (run.meta.get("supernet") or {}).items()]
    rows += [[f"backbone.{k}", _plain_value(v)] for k, v in ((run.card or {}).get("backbone") or {}).items()]
    rows.append(["toolkit_version", str(run.meta.get("toolkit_version", "—"))])
    return section(
        "config",
        "Run configuration",
        table(["setting", "value"], rows, table_id="config-table"),
        "<h3>Search space</h3>",
        pre(run.config.get("space", {})),
    )


def _compare_section(cmp: Comparison, run: Run, other: Run, figures: _Figures) -> str:
    rows = [list(r.cells()) for r in cmp.rows]
    fig = _figures.compare_figure(front_plot_data(run), front_plot_data(other), (cmp.name_a, cmp.name_b))
    return section(
        "compare",
        f"Comparison: {cmp.name_a} vs {cmp.name_b}",
        figures.html(fig, "compare-plot"),
        table(["figure", cmp.name_a, cmp.name_b, "change (B - A)"], rows, table_id="compare-table"),
    )


def _times(run: Run) -> str:
    finished = run.meta.get("finished") or "not finished"
    version = run.meta.get("toolkit_version", "?")
    return f"created {run.meta.get('created', '—')}, finished {finished}, toolkit {version}"


def _num(value: Any, formatter: Any) -> Cell:
    if hasattr(value, "item"):
        value = value.item()
    if is_missing(value):
        return Cell("—")
    return Cell(formatter(value), float(value))


def _plain_value(value: Any) -> str:
    return "—" if value is None else (str(value) if not isinstance(value, dict | list) else repr(value))

"""Plot and table data for a run, as NamedTuples of plain values (Optuna style: data apart from drawing).

Every function here takes a :class:`~reports.Run` and returns lists, floats and strings only, so tests can
check the data and the drawing code (``reports._figures``) stays free of logic.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import pandas as pd

from reports._run import Run

__all__ = [
    "CompressionRow",
    "DevicePlotData",
    "FrontPlotData",
    "HeadCost",
    "HypervolumePlotData",
    "LayerTable",
    "compression_rows",
    "device_plot_data",
    "front_plot_data",
    "hypervolume_plot_data",
    "layer_table",
    "provenance_label",
]

_UNITS = {
    "ane": "ANE",
    "neural_engine": "ANE",
    "neuralengine": "ANE",
    "ne": "ANE",
    "gpu": "GPU",
    "cpu": "CPU",
}


class FrontPlotData(NamedTuple):
    """The Pareto front (quality against worst-device latency), the other trials, baselines and the budget."""

    trial: list[int]
    quality: list[float]
    latency_ms: list[float]
    worst_device: list[str]
    disk_mb: list[float]
    peak_memory_mb: list[float]
    feasible: list[bool]
    label: list[str]
    chosen_trial: int
    other_quality: list[float]
    other_latency_ms: list[float]
    baseline_name: list[str]
    baseline_quality: list[float]
    baseline_latency_ms: list[float]
    budget_ms: float


class HypervolumePlotData(NamedTuple):
    """Hypervolume of the feasible front after each finished trial."""

    trial_number: list[int]
    hypervolume: list[float]


class DevicePlotData(NamedTuple):
    """The chosen model's figures per device, where each comes from, and the budgets to draw."""

    device: list[str]
    latency_ms: list[float]
    latency_error_ms: list[float]
    peak_memory_mb: list[float]
    disk_mb: list[float]
    source: list[str]
    provenance: list[str]
    budget_ms: float
    memory_budget_mb: float | None
    disk_budget_mb: float | None
    #: the latency's prediction interval per device (None where the card has none: older runs, host)
    latency_p10_ms: list[float | None] = []
    latency_p90_ms: list[float | None] = []
    #: probability (by held-out errors) that the latency stays within the budget, per device
    budget_confidence: list[float | None] = []
    confidence: float | None = None  # the interval level the search held the budget at


class HeadCost(NamedTuple):
    """One head's (or the backbone's) own cost on the slowest device."""

    head: str
    layers: int
    ms: float
    share: float
    flops: int
    params: int | None
    disk_mb: float | None


class LayerTable(NamedTuple):
    """Per-layer cost of the chosen model on its slowest device, with Neural Engine fallbacks flagged."""

    device: str
    columns: list[str]
    rows: list[list[Any]]
    fallback: list[bool]
    heads: list[HeadCost]
    unit_ms: dict[str, float]
    total_ms: float


class CompressionRow(NamedTuple):
    """One compression step of the chosen model (scheme, prune ratio) and what it cost or saved."""

    scheme: str
    prune: float
    params: int | None
    disk_mb: float | None
    quality: float | None
    quality_change: float | None


def front_plot_data(run: Run) -> FrontPlotData:
    """Data for the Pareto-front plot: front rows, the non-front trials, baselines and the budget."""
    front = run.front.sort_values("worst_latency_ms")
    mem_cols = [f"peak_memory_mb.{d}" for d in run.devices]
    others = run.trials[~run.trials["trial"].isin(front["trial"])]
    if "state" in others:
        others = others[others["state"].astype(str).str.upper() == "COMPLETE"]
    return FrontPlotData(
        trial=[int(t) for t in front["trial"]],
        quality=_floats(front["quality"]),
        latency_ms=_floats(front["worst_latency_ms"]),
        worst_device=[str(d) for d in front["worst_device"]],
        disk_mb=_floats(front["disk_mb"]),
        peak_memory_mb=_floats(front[mem_cols].max(axis=1)),
        feasible=[bool(f) for f in front["feasible"]],
        label=[f"{a} [{q}]" for a, q in zip(front["arch"], front["quant"], strict=True)],
        chosen_trial=int(run.card["trial"]),
        other_quality=_floats(others["quality"]),
        other_latency_ms=_floats(others["worst_latency_ms"]),
        baseline_name=[str(n) for n in run.baselines["name"]],
        baseline_quality=_floats(run.baselines["quality"]),
        baseline_latency_ms=_floats(run.baselines["worst_latency_ms"]),
        budget_ms=run.budget_ms,
    )


def hypervolume_plot_data(run: Run) -> HypervolumePlotData:
    """Data for the hypervolume history, in trial order."""
    hv = run.hypervolume.sort_values("trial_number")
    return HypervolumePlotData(
        trial_number=[int(t) for t in hv["trial_number"]], hypervolume=_floats(hv["hypervolume"])
    )


def device_plot_data(run: Run) -> DevicePlotData:
    """Data for the per-device plot of the chosen model: latency (± calibration error), memory, disk."""
    devices = [d for d in run.devices if d in run.card["devices"]]
    devices += [d for d in run.card["devices"] if d not in devices]
    figs = [run.card["devices"][d] for d in devices]
    prov = run.provenance
    latency = [float(f["latency_ms"]) for f in figs]
    errors = [_error_pct(prov.get(d, f)) for d, f in zip(devices, figs, strict=True)]
    return DevicePlotData(
        device=devices,
        latency_ms=latency,
        latency_error_ms=[lat * (e or 0.0) / 100 for lat, e in zip(latency, errors, strict=True)],
        peak_memory_mb=[float(f["peak_memory_mb"]) for f in figs],
        disk_mb=[float(f["disk_mb"]) for f in figs],
        source=[str(prov.get(d, f).get("source") or "unknown") for d, f in zip(devices, figs, strict=True)],
        provenance=[provenance_label(prov.get(d, f)) for d, f in zip(devices, figs, strict=True)],
        budget_ms=run.budget_ms,
        memory_budget_mb=_opt_float(run.config.get("memory_mb")),
        disk_budget_mb=_opt_float(run.config.get("disk_mb")),
        latency_p10_ms=[_opt_float(f.get("latency_ms_p10")) for f in figs],
        latency_p90_ms=[_opt_float(f.get("latency_ms_p90")) for f in figs],
        budget_confidence=[_opt_float(f.get("budget_confidence")) for f in figs],
        confidence=_opt_float(run.card.get("confidence")),
    )


def layer_table(run: Run) -> LayerTable:
    """Per-layer rows and per-head totals on the slowest device.

    A layer is flagged as a Neural Engine fallback when it runs on the GPU or CPU while other layers of the
    same model run on the Neural Engine on that device (so the device has one that Core ML uses). The
    per-inference overhead rows (op ``inference``) of ``profiles.Cost.layers`` are never flagged.
    """
    layers = run.layers.copy()
    layers["unit"] = [_unit(u) for u in layers["unit"]]
    has_ane = bool((layers["unit"] == "ANE").any())
    total = float(layers["ms"].sum())
    columns = ["name", "op", "head", "unit", "ms", "flops", "bytes", "shapes"]
    rows = [[_plain(v) for v in rec] for rec in layers[columns].itertuples(index=False)]
    return LayerTable(
        device=run.slowest_device,
        columns=columns,
        rows=rows,
        fallback=[
            has_ane and u != "ANE" and op != "inference"
            for u, op in zip(layers["unit"], layers["op"], strict=True)
        ],
        heads=_head_costs(run, layers, total),
        unit_ms={str(u): float(ms) for u, ms in layers.groupby("unit", sort=True)["ms"].sum().items()},
        total_ms=total,
    )


def compression_rows(run: Run) -> list[CompressionRow]:
    """The card's compression steps: params, disk and quality change against the first step."""
    steps = run.card.get("compression") or []
    first = _opt_float(steps[0].get("quality")) if steps else None
    rows = []
    for step in steps:
        quality = _opt_float(step.get("quality"))
        change = quality - first if quality is not None and first is not None else None
        params = step.get("params")
        rows.append(
            CompressionRow(
                scheme=str(step.get("scheme", "?")),
                prune=float(step.get("prune") or 0.0),
                params=int(params) if params is not None else None,
                disk_mb=_opt_float(step.get("disk_mb")),
                quality=quality,
                quality_change=change,
            )
        )
    return rows


def provenance_label(prov: dict[str, Any]) -> str:
    """``measured``, ``calibrated ±12.3%`` or ``spec-derived`` (the words a reader sees next to a figure)."""
    source = str(prov.get("source") or "unknown").lower()
    if source.startswith("cal"):
        err = _error_pct(prov)
        return f"calibrated ±{err:.1f}%" if err is not None else "calibrated (error unknown)"
    if source.startswith("spec"):
        return "spec-derived"
    if source.startswith("meas"):
        return "measured"
    return source


def _head_costs(run: Run, layers: pd.DataFrame, total: float) -> list[HeadCost]:
    card_heads = run.card.get("heads") or {}
    present = {str(h) for h in layers["head"]} | set(card_heads)
    names = [h for h in ("backbone",) if h in present]
    names += sorted(h for h in present if h.startswith("backbone ("))  # layers shared by some heads
    names += [h for h in ("tagging", "detection", "saliency") if h in present]
    names += sorted(present - set(names))
    out = []
    for head in names:
        own = layers[layers["head"] == head]
        info = card_heads.get(head) or {}
        ms = (
            float(own["ms"].sum())
            if len(own)
            else _opt_float(info.get(f"latency_ms.{run.slowest_device}")) or 0.0
        )
        params = info.get("params")
        out.append(
            HeadCost(
                head=str(head),
                layers=int(len(own)),
                ms=ms,
                share=ms / total if total > 0 else 0.0,
                flops=int(own["flops"].sum()),
                params=int(params) if params is not None else None,
                disk_mb=_opt_float(info.get("disk_mb")),
            )
        )
    return out


def _unit(value: Any) -> str:
    text = str(value).strip()
    return _UNITS.get(text.lower().replace(" ", "_"), text)


def _error_pct(prov: dict[str, Any]) -> float | None:
    return _opt_float(prov.get("error_pct"))


def _opt_float(value: Any) -> float | None:
    if value is None:
        return None
    out = float(value)
    return None if math.isnan(out) else out


def _floats(series: pd.Series) -> list[float]:
    return [float(v) for v in series]


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value

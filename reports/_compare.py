"""Two runs side by side (``compress report --compare RUN_A RUN_B``): plain data, drawn by the writers."""

from __future__ import annotations

from typing import Any, NamedTuple

from reports._format import fmt, fmt_mb, fmt_ms, fmt_params, fmt_quality, is_missing
from reports._run import Run

__all__ = ["Comparison", "ComparisonRow", "compare_runs"]


class ComparisonRow(NamedTuple):
    """One figure of both runs; ``kind`` picks its formatting (ms, mb, quality, params, count, text)."""

    label: str
    a: Any
    b: Any
    kind: str = "text"

    @property
    def delta(self) -> float | None:
        """``b - a`` for numeric figures, else None."""
        if self.kind == "text" or is_missing(self.a) or is_missing(self.b):
            return None
        return float(self.b) - float(self.a)

    def cells(self) -> tuple[str, str, str, str]:
        """Label, both values and the change, formatted for a table."""
        delta = self.delta
        sign = "" if delta is None else ("+" if delta > 0 else "")
        return (
            self.label,
            _format(self.a, self.kind),
            _format(self.b, self.kind),
            "" if delta is None else sign + _format(delta, self.kind),
        )


class Comparison(NamedTuple):
    """The names of both runs and one row per compared figure."""

    name_a: str
    name_b: str
    rows: list[ComparisonRow]


def compare_runs(run_a: Run, run_b: Run) -> Comparison:
    """Compare the config, the search outcome and the chosen model of two runs."""
    a, b = _figures(run_a), _figures(run_b)
    rows = [ComparisonRow(label, a[label][0], b[label][0], a[label][1]) for label in a]
    return Comparison(name_a=run_a.name, name_b=run_b.name, rows=rows)


def _figures(run: Run) -> dict[str, tuple[Any, str]]:
    card, front = run.card, run.front
    feasible = front[front["feasible"]]
    devices = card["devices"]
    worst = run.slowest_device
    trials = run.trials
    complete = trials[trials["state"].astype(str).str.upper() == "COMPLETE"] if len(trials) else trials
    chosen = front[front["trial"] == card["trial"]]
    hv = run.hypervolume["hypervolume"]
    return {
        "budget": (run.budget_ms, "ms"),
        "devices": (", ".join(run.devices), "text"),
        "sampler": (str(run.config.get("sampler", "—")), "text"),
        "finished trials": (len(complete), "count"),
        "front size": (len(front), "count"),
        "feasible on front": (len(feasible), "count"),
        "best feasible quality": (feasible["quality"].max() if len(feasible) else None, "quality"),
        "final hypervolume": (float(hv.iloc[-1]) if len(hv) else None, "count"),
        "chosen trial": (str(card["trial"]), "text"),
        "chosen arch": (str(card["arch"]), "text"),
        "chosen quant": (str(card["quant"]), "text"),
        "chosen quality": (float(card["quality"]["aggregate"]), "quality"),
        "chosen worst latency": (float(devices[worst]["latency_ms"]), "ms"),
        "chosen slowest device": (worst, "text"),
        "chosen peak memory": (max(float(d["peak_memory_mb"]) for d in devices.values()), "mb"),
        "chosen disk": (max(float(d["disk_mb"]) for d in devices.values()), "mb"),
        "chosen params": (float(chosen["params"].iloc[0]) if len(chosen) else None, "params"),
    }


def _format(value: Any, kind: str) -> str:
    formatter = {"ms": fmt_ms, "mb": fmt_mb, "quality": fmt_quality, "params": fmt_params}.get(kind)
    if formatter is not None:
        return formatter(value)
    if kind == "count" and not is_missing(value):
        return f"{float(value):.6g}"
    return fmt(value)

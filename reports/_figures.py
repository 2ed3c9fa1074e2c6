"""Drawing the plot data with plotly (imported here, lazily, when a report is written).

Each function takes one NamedTuple from ``reports._data`` and returns a ``plotly.graph_objects.Figure``;
there is no logic here beyond layout. User text (arch strings, baseline names) is passed to plotly as data,
never as HTML: hover labels are escaped before plotly sees them.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from reports._data import DevicePlotData, FrontPlotData, HypervolumePlotData, LayerTable

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = ["compare_figure", "device_figure", "front_figure", "head_figure", "hypervolume_figure"]

_FONT = {"family": "system-ui, -apple-system, Segoe UI, sans-serif", "size": 12}
_SOURCE_COLOURS = {"measured": "#2e7d32", "calibrated": "#1565c0", "spec": "#9e9e9e"}


def _source_colour(source: str) -> str:
    return next((c for key, c in _SOURCE_COLOURS.items() if source.lower().startswith(key)), "#616161")


def _layout(fig: go.Figure, *, title: str, height: int = 420) -> go.Figure:
    fig.update_layout(
        title={"text": html.escape(title), "x": 0.01},
        height=height,
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
        font=_FONT,
        template="plotly_white",
        legend={"orientation": "h", "y": -0.18},
    )
    return fig


def front_figure(data: FrontPlotData) -> go.Figure:
    """Quality against worst-device latency; colour = disk MB, size = peak memory; baselines; budget line."""
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=data.other_latency_ms,
            y=data.other_quality,
            mode="markers",
            name="other trials",
            marker={"color": "#cfd8dc", "size": 6},
            hovertemplate="%{x:.2f} ms, quality %{y:.2f}<extra>trial</extra>",
        )
    )
    fig.add_trace(_front_trace(data))
    if data.chosen_trial in data.trial:
        i = data.trial.index(data.chosen_trial)
        fig.add_trace(
            go.Scatter(
                x=[data.latency_ms[i]],
                y=[data.quality[i]],
                mode="markers",
                name=f"chosen (trial {data.chosen_trial})",
                marker={
                    "symbol": "star",
                    "size": 22,
                    "color": "#e53935",
                    "line": {"width": 1, "color": "#000"},
                },
                hovertemplate="chosen: %{x:.2f} ms, quality %{y:.2f}<extra></extra>",
            )
        )
    fig.add_trace(
        go.Scatter(
            x=data.baseline_latency_ms,
            y=data.baseline_quality,
            mode="markers+text",
            name="MobileNetV3 baselines",
            text=[html.escape(n) for n in data.baseline_name],
            textposition="top center",
            marker={"symbol": "diamond", "size": 11, "color": "#ff8f00"},
            hovertemplate="%{text}: %{x:.2f} ms, quality %{y:.2f}<extra></extra>",
        )
    )
    fig.add_vline(
        x=data.budget_ms,
        line={"color": "#c62828", "dash": "dash"},
        annotation_text=f"budget {data.budget_ms:g} ms",
        annotation_position="top right",
    )
    fig.update_xaxes(title_text="worst-device latency (ms)", rangemode="tozero")
    fig.update_yaxes(title_text="quality (aggregate, 0-100)")
    return _layout(fig, title="Pareto front: quality vs worst-device latency", height=480)


def _front_trace(data: FrontPlotData) -> go.Scatter:
    """The Pareto front as a step line of markers: colour = disk MB, size = peak memory, open = over budget."""
    import plotly.graph_objects as go

    mem_max = max(data.peak_memory_mb, default=1.0) or 1.0
    hover = [
        f"trial {t} ({'feasible' if f else 'over budget'})<br>{html.escape(lbl)}<br>"
        f"worst device {html.escape(d)}<br>disk {disk:.2f} MB, peak memory {mem:.1f} MB"
        for t, f, lbl, d, disk, mem in zip(
            data.trial,
            data.feasible,
            data.label,
            data.worst_device,
            data.disk_mb,
            data.peak_memory_mb,
            strict=True,
        )
    ]
    return go.Scatter(
        x=data.latency_ms,
        y=data.quality,
        mode="lines+markers",
        name="Pareto front",
        line={"color": "#90a4ae", "dash": "dot", "shape": "hv"},
        marker={
            "color": data.disk_mb,
            "colorscale": "Viridis",
            "showscale": True,
            "colorbar": {"title": {"text": "disk MB"}},
            "size": [10 + 16 * m / mem_max for m in data.peak_memory_mb],
            "symbol": ["circle" if f else "circle-open" for f in data.feasible],
            "line": {"width": 1.5, "color": "#37474f"},
        },
        text=hover,
        hovertemplate="%{text}<br>%{x:.2f} ms, quality %{y:.2f}<extra></extra>",
    )


def hypervolume_figure(data: HypervolumePlotData) -> go.Figure:
    """Hypervolume of the feasible front after each trial."""
    import plotly.graph_objects as go

    fig = go.Figure(
        go.Scatter(
            x=data.trial_number,
            y=data.hypervolume,
            mode="lines+markers",
            line={"shape": "hv", "color": "#1565c0"},
            name="hypervolume",
        )
    )
    fig.update_xaxes(title_text="trial")
    fig.update_yaxes(title_text="hypervolume")
    return _layout(fig, title="Hypervolume history", height=320)


def _latency_bars(data: DevicePlotData) -> dict:
    """Error bars: the p10-p90 prediction interval where every device has one, else ± the held-out error."""
    lo, hi = data.latency_p10_ms, data.latency_p90_ms
    if lo and hi and all(v is not None for v in lo + hi):
        up = [float(h or 0.0) - m for h, m in zip(hi, data.latency_ms, strict=True)]
        down = [m - float(v or 0.0) for v, m in zip(lo, data.latency_ms, strict=True)]
        return {"type": "data", "symmetric": False, "array": up, "arrayminus": down, "visible": True}
    return {"type": "data", "array": data.latency_error_ms, "visible": True}


def device_figure(data: DevicePlotData) -> go.Figure:
    """Latency (with calibration error bars), peak memory and disk per device, budgets drawn."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=3, subplot_titles=("latency (ms)", "peak memory (MB)", "disk (MB)"))
    colours = [_source_colour(s) for s in data.source]
    hover = [html.escape(p) for p in data.provenance]
    common = {
        "x": data.device,
        "marker": {"color": colours},
        "text": hover,
        "textposition": "none",
        "showlegend": False,
    }
    fig.add_trace(
        go.Bar(
            y=data.latency_ms,
            error_y=_latency_bars(data),
            hovertemplate="%{x}: %{y:.2f} ms (%{text})<extra></extra>",
            **common,
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Bar(y=data.peak_memory_mb, hovertemplate="%{x}: %{y:.1f} MB<extra></extra>", **common), 1, 2
    )
    fig.add_trace(go.Bar(y=data.disk_mb, hovertemplate="%{x}: %{y:.2f} MB<extra></extra>", **common), 1, 3)
    for col, budget, unit in (
        (1, data.budget_ms, "ms"),
        (2, data.memory_budget_mb, "MB"),
        (3, data.disk_budget_mb, "MB"),
    ):
        if budget is not None:
            fig.add_hline(
                y=budget,
                row=1,
                col=col,
                line={"color": "#c62828", "dash": "dash"},
                annotation_text=f"budget {budget:g} {unit}",
            )
    return _layout(
        fig, title="Chosen model per device (bar colour: green measured, blue calibrated, grey spec)"
    )


def head_figure(data: LayerTable) -> go.Figure:
    """Each head's own latency on the slowest device."""
    import plotly.graph_objects as go

    fig = go.Figure(
        go.Bar(
            x=[h.ms for h in data.heads],
            y=[html.escape(h.head) for h in data.heads],
            orientation="h",
            text=[f"{h.ms:.2f} ms ({100 * h.share:.0f}%)" for h in data.heads],
            textposition="auto",
            marker={"color": "#5c6bc0"},
            hovertemplate="%{y}: %{x:.2f} ms<extra></extra>",
        )
    )
    fig.update_xaxes(title_text=f"latency on {html.escape(data.device)} (ms)")
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, title=f"Per-head cost on the slowest device ({data.device})", height=300)


def compare_figure(a: FrontPlotData, b: FrontPlotData, names: tuple[str, str]) -> go.Figure:
    """Two runs' fronts on one plot, each with its own budget line."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for data, name, colour in ((a, names[0], "#1565c0"), (b, names[1], "#ef6c00")):
        fig.add_trace(
            go.Scatter(
                x=data.latency_ms,
                y=data.quality,
                mode="lines+markers",
                name=html.escape(name),
                line={"shape": "hv", "color": colour},
                text=[f"trial {t}" for t in data.trial],
                hovertemplate="%{text}: %{x:.2f} ms, quality %{y:.2f}<extra></extra>",
            )
        )
        fig.add_vline(x=data.budget_ms, line={"color": colour, "dash": "dash"})
    fig.update_xaxes(title_text="worst-device latency (ms)", rangemode="tozero")
    fig.update_yaxes(title_text="quality (aggregate, 0-100)")
    return _layout(fig, title="Pareto fronts side by side (dashed: each run's budget)")

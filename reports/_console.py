"""Terminal tables with rich. Run-supplied text goes in as ``rich.text.Text``, never read as markup."""

from __future__ import annotations

from typing import TYPE_CHECKING

from reports._compare import Comparison
from reports._data import device_plot_data
from reports._format import fmt_chance, fmt_interval, fmt_mb, fmt_ms, fmt_quality
from reports._html import headline
from reports._run import Run

if TYPE_CHECKING:
    from rich.table import Table

__all__ = ["comparison_table", "summary_table"]


def summary_table(run: Run) -> Table:
    """The chosen model per device (latency against the budget, memory, disk, source), titled by the run."""
    from rich.table import Table
    from rich.text import Text

    data = device_plot_data(run)
    table = Table(
        title=Text(
            f"{run.name}: chosen trial {run.card['trial']} ({run.card['quant']}), "
            f"quality {fmt_quality(run.card['quality']['aggregate'])}"
        ),
        caption=Text(headline(run)),
        caption_justify="left",
    )
    n = len(data.device)
    lo, hi = data.latency_p10_ms or [None] * n, data.latency_p90_ms or [None] * n
    chance = data.budget_confidence or [None] * n
    for col in ("device", "latency", "p10-p90", "budget", "P(within)", "peak memory", "disk", "source"):
        table.add_column(col, justify="left" if col in ("device", "source") else "right")
    for dev, lat, mem, disk, prov, a, b, p in zip(
        data.device, data.latency_ms, data.peak_memory_mb, data.disk_mb, data.provenance, lo, hi, chance,
        strict=True,
    ):  # fmt: skip
        over = lat > data.budget_ms
        table.add_row(
            Text(dev),
            Text(fmt_ms(lat), style="bold red" if over else "green"),
            Text(fmt_interval(a, b)),
            Text(fmt_ms(data.budget_ms)),
            Text(fmt_chance(p)),
            Text(fmt_mb(mem)),
            Text(fmt_mb(disk)),
            Text(prov),
        )
    return table


def comparison_table(cmp: Comparison) -> Table:
    """Two runs side by side, one row per figure, with the change from A to B."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(f"{cmp.name_a} vs {cmp.name_b}"))
    table.add_column("figure")
    table.add_column(Text(cmp.name_a), overflow="fold")
    table.add_column(Text(cmp.name_b), overflow="fold")
    table.add_column("change (B - A)", justify="right")
    for row in cmp.rows:
        table.add_row(*(Text(c) for c in row.cells()))
    return table

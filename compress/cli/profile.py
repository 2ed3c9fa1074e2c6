"""``compress profile``: device profiles (list, show), measuring this machine, calibration.

Each command parses its arguments, makes one call into :mod:`profiles` and prints the result.
``profiles.ProfileError`` propagates; the top-level CLI prints it as one line (exit code 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

__all__ = ["app"]

app = typer.Typer(
    help="Device profiles: list and show them, measure this machine, calibrate on measured latencies.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _console() -> Console:
    return Console(width=160)


@app.command("list")
def list_cmd() -> None:
    """A table of the device profiles: compute units, peak rates, calibration error."""
    import profiles

    names = profiles.list_profiles()
    if profiles.host_profile_path().exists():
        names.append("host")
    rows = [profiles.summary_row(profiles.load_profile(n)) for n in names]
    table = Table(title="Device profiles (compress profile show NAME for every number and its source)")
    for key in rows[0]:
        table.add_column(key, justify="left" if key in ("device", "chip", "units", "basis") else "right")
    for row in rows:
        table.add_row(*(escape(str(v)) for v in row.values()))
    _console().print(table)


@app.command("show")
def show_cmd(
    name: Annotated[str, typer.Argument(help="Device (a11 ... m4, host) or a profile .toml path.")],
) -> None:
    """Every number of one profile with its source."""
    import profiles

    table = Table(show_header=True, header_style="bold")
    for col in ("key", "value", "source"):
        table.add_column(col, overflow="fold")
    for row in profiles.describe_profile(profiles.load_profile(name)):
        table.add_row(*(escape(str(v)) for v in row))
    _console().print(table)


@app.command("measure")
def measure_cmd(
    out: Annotated[
        Path | None,
        typer.Option("--out", help="The host profile to write (or, with --refresh, to re-anchor in place)."),
    ] = None,
    threads: Annotated[int, typer.Option("--threads", min=1, help="torch threads to measure with.")] = 1,
    coreml: Annotated[
        Path | None, typer.Option("--coreml", help="Measure this .mlpackage per compute unit (macOS only).")
    ] = None,
    refresh: Annotated[
        bool,
        typer.Option(
            "--refresh",
            help="Re-anchor the existing host profile to the machine's speed now (~30 s): re-time 8 of its "
            "own nets and scale every time in it by their median change.",
        ),
    ] = False,
) -> None:
    """Measure this machine's CPU with torch (writes the `host` profile), or a Core ML model on macOS."""
    import profiles
    from compress.model import sample_nets

    if coreml is not None:
        for unit, ms in profiles.measure_coreml(coreml).items():
            typer.echo(f"{unit:12s} {ms:8.3f} ms")
        return
    if refresh:
        if threads != 1:
            raise profiles.ProfileError(
                f"--threads does not apply with --refresh (got {threads}): a refresh re-times the profile at "
                "the thread count it was measured with; drop --threads"
            )
        path, ratio = profiles.refresh_host(out, extra=sample_nets(24))
        typer.echo(f"wrote {path}: every host time x{ratio:.3f} (the machine runs {100 * (ratio - 1):+.1f}%)")
        return
    path = profiles.measure_host(threads=threads, out=out, extra=sample_nets(24))
    p = profiles.load_profile(path)
    typer.echo(f"wrote {path}: leave-one-out median |error| {p.calibration.loo_median_abs_pct:.1f}%")


@app.command("calibrate")
def calibrate_cmd(
    measurements: Annotated[
        Path,
        typer.Argument(metavar="MEASUREMENTS.csv", help="Latencies in the published-latencies CSV format."),
    ],
    device: Annotated[str, typer.Option("--device", help="Profile to calibrate (a11 ... m4, or a .toml).")],
    out: Annotated[Path | None, typer.Option("--out", help="Write the calibrated profile here.")] = None,
) -> None:
    """Fit a profile to measured latencies and print the leave-one-out error of every row."""
    import profiles

    result = profiles.calibrate(device, measurements)
    table = Table(title=f"{escape(result.profile.name)}: leave-one-out prediction per row")
    for col in ("row", "input", "measured ms", "predicted ms", "error"):
        table.add_column(col, justify="left" if col == "row" else "right")
    for t in result.table.itertuples():
        table.add_row(
            escape(str(t.row)),
            escape(str(t.input)),
            f"{t.measured_ms:.3f}",
            f"{t.loo_ms:.3f}",
            f"{t.loo_pct:+.1f}%",
        )
    console = _console()
    console.print(table)
    row, pct = result.worst
    console.print(
        f"median |error| {result.loo_median_abs_pct:.1f}%; worst row {escape(str(row))}: {pct:+.1f}%"
    )
    for s in result.skipped:
        console.print(f"skipped: {escape(str(s))}")
    if out is not None:
        from compress.atomic import write_text

        write_text(
            out, profiles.dump_profile(result.profile)
        )  # temp file + rename: a kill leaves no half profile
        console.print(f"wrote {escape(str(out))}")

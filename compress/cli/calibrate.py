"""``compress calibrate-quality``: train the calibration shapes standalone for the search's quality model."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer


def calibrate_quality_cmd(
    data: Annotated[str, typer.Option(help="'builtin' (generated scenes) or 'coco:PATH'.")] = "builtin",
    out: Annotated[
        Path,
        typer.Option(
            help="The calibration file to write (JSON); pass it to `compress search --quality-calibration`."
        ),
    ] = Path("runs/quality-calibration.json"),
    steps: Annotated[
        int, typer.Option(help="Training steps per shape, from scratch, with the final-training recipe.")
    ] = 300,
    seed: Annotated[int, typer.Option(help="Random seed of the shapes' initialisation and batches.")] = 0,
    samples: Annotated[
        int,
        typer.Option(
            help="Architectures drawn at random from the default space (pruned ones among them, a fixed draw) "
            "trained beside the six shapes."
        ),
    ] = 10,
    cache_dir: Annotated[Path | None, typer.Option(help="Where generated or decoded data is cached.")] = None,
) -> None:
    """Train six hand-scaled MobileNetV3 shapes and architectures drawn from the space from scratch, and record
    their validation quality.

    The search fits its quality model (predicted trained quality from compute, inherited score and the
    scheme's loss) on these results; ~35 min on 2 CPU cores at 300 steps. The file is rewritten after each
    shape, and a rerun keeps the results it already holds (same data, steps, seed), so a stopped calibration
    resumes.
    """
    from compress.cli import quiet
    from search.quality import calibrate_quality

    command = "compress " + shlex.join(sys.argv[1:]) if sys.argv[1:] else ""
    cal = calibrate_quality(
        data,
        steps=steps,
        seed=seed,
        samples=samples,
        cache_dir=cache_dir,
        progress=not quiet(),
        command=command,
        out=out,
    )
    cal.save(out)
    if not quiet():
        for s in cal.shapes:
            typer.echo(
                f"{s.name:<22} {s.flops / 1e6:7.1f} MFLOPs  val quality {s.quality:6.2f}  ({s.seconds:.0f} s)"
            )
        typer.echo(f"wrote {out} (data {cal.data}, sha256 {cal.data_sha256}, {cal.steps} steps, seed {seed})")

"""``compress export``: a saved model as a Core ML package (compressed with a scheme) and optionally ONNX."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["export_cmd"]


def export_cmd(
    model: Annotated[
        Path,
        typer.Argument(
            metavar="MODEL.safetensors", help="Model checkpoint written by compress (ArchSpec + safetensors)."
        ),
    ],
    scheme: Annotated[
        str, typer.Option(help="fp32, fp16, int8, pal2/pal4/pal6/pal8, palN-gK (e.g. pal4-g16) or w8a8.")
    ] = "fp16",
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")] = Path("export"),
    onnx: Annotated[
        bool, typer.Option("--onnx", help="Also write model.onnx (float model, opset 17).")
    ] = False,
    data: Annotated[
        str, typer.Option(help="Calibration data for w8a8 activation ranges: 'builtin' or 'coco:PATH'.")
    ] = "builtin",
    onnx_exporter: Annotated[
        str,
        typer.Option(
            help="torchscript (fast) or dynamo (torch.export; needs the onnx-dynamo extra, opset 18)."
        ),
    ] = "torchscript",
) -> None:
    """Write OUT/model.mlpackage (ML Program, image input, one output per head) and print its size."""
    from compress.export import export_model

    result = export_model(model, out, scheme=scheme, onnx=onnx, calibration=data, onnx_exporter=onnx_exporter)
    typer.echo(f"{result.coreml}  {result.size_mb:.2f} MB  ({scheme})")
    if result.onnx is not None:
        typer.echo(f"{result.onnx}")

"""ONNX export time: torch's TorchScript exporter against its dynamo exporter, side by side on one model.

    python benchmarks/onnx_export.py [--repeats 2]

The model is the largest subnet of the default space (random weights: export time does not depend on them);
each exporter writes it ``--repeats`` times, alternating, and the median seconds of each and their ratio are
printed, with the largest output difference of the two files in onnxruntime. Needs the onnx-dynamo extra.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=2, help="exports per exporter (alternating)")
    args = ap.parse_args()
    if args.repeats < 1:
        ap.error(f"--repeats must be >= 1, but got {args.repeats}")
    import onnxruntime as ort

    from compress.export import export_onnx
    from compress.model import Supernet, default_space, extract

    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    space = default_space(num_classes=20)
    model = extract(Supernet(space), space.largest()).eval()
    seconds: dict[str, list[float]] = {"torchscript": [], "dynamo": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for exporter in seconds:
                t0 = time.perf_counter()
                export_onnx(model, Path(tmp) / f"{exporter}.onnx", exporter=exporter, opset=18)
                seconds[exporter].append(time.perf_counter() - t0)
        x = np.random.default_rng(0).random((2, 3, model.spec.resolution, model.spec.resolution), np.float32)
        outs = [
            ort.InferenceSession(str(Path(tmp) / f"{e}.onnx"), providers=["CPUExecutionProvider"]).run(
                None, {"image": x}
            )
            for e in seconds
        ]
    diff = max(float(np.abs(a - b).max()) for a, b in zip(*outs, strict=True))
    med = {e: statistics.median(v) for e, v in seconds.items()}
    print(f"largest subnet of the default space at {model.spec.resolution} px, {args.repeats} exports each")
    for e, v in seconds.items():
        print(f"{e:<12} median {med[e]:6.1f} s   (each: {', '.join(f'{s:.1f}' for s in v)})")
    print(
        f"dynamo / torchscript: {med['dynamo'] / med['torchscript']:.1f}x   largest output difference {diff:.2e}"
    )


if __name__ == "__main__":
    main()

"""The published Apple latencies as one table of calibration evidence, with every exclusion and its reason.

Two files in ``shared/reference/``: ``apple-published-latencies.csv`` (one row per model x chip x scheme, with
tool and source) and ``apple-latencies-more.csv`` (read ``apple-latencies-more.md``: sources S3-S25, Core ML
and other runtimes, CPU-only / GPU-only / all-units rows). :func:`load_evidence` returns both as rows of one
schema::

    model (reference-model name), family (the network, for grouped validation), input, chip, device (profile
    name), units ("all" | "cpu" | "gpu": Core ML compute units), quant (scheme), tool (tool class), source
    (source key), sigma (log-scale noise of the row), latency_ms, label

and a table of excluded rows with the reason for each. What is kept, and why (the caveats of the .md):

- Core ML rows, and TFLite's fp32 rows on A11-A13 (S5, S6, S7: MobileNetV1 on the CPU at 1 or 2 threads
  and on the GPU delegate) as evidence through a runtime term each (:data:`RUNTIMES`; identified on A13,
  where S7 measured beside S3's Core ML rows; see :mod:`profiles._applefit`). They are the only rows of
  A11's and A12's CPU, and the only A13 CPU / GPU rows outside S3, so leaving S3 out no longer leaves A13's
  CPU and GPU without rows. Their uint8 rows are left out (no scheme of this toolkit). Other runtimes (ncnn,
  MPS via SimpleNN, ExecuTorch's XNNPACK) stay out: their kernels differ (below for ncnn), and no chip holds
  both their rows and Core ML's on the same unit but M1 (ncnn). A frame-paced camera app (S4) measures the
  pipeline, not the model.
- A chip that is a device class of this toolkit (M1 Max, M2 Max, M1 Pro, A18 Pro are not).
- A model that is a reference model (:mod:`profiles.reference_models`) at a stated input size.
- S3's ``.all`` rows (app loop on A13, preprocessing inside the model) are left out: the smallest nets read
  1-2 ms there, the Neural Engine runs them in ~0.1-0.2 ms (Xcode rows), and no other tool on A13 identifies
  that app overhead; so is every other iOS app-timed ``.all`` row of a chip that no other tool measured
  (A12). S3's CPU-only and GPU-only rows stay (the overhead is a few % of 5-200 ms), with the
  whole-millisecond rounding in their noise. An app overhead for S3 could only come from S3 itself (no other
  tool measured A13's Neural Engine through Core ML alone), so leaving S3 out would leave every such row
  without it.

Tried and not kept, judged by the grouped held-out errors of ``benchmarks/apple_calibration.py`` (leave-one-
source / network / chip-out median, 42.0 / 32.2 / 39.1% with the rows above; all figures in this list from
folds fitted from one start, before the two-start folds of ``profiles._shipped``):

- ncnn's 32 fp32 rows on M1 and M3 (S11: AlexNet, EfficientNet-B0, MobileNetV1/V2/V3-Large, ResNet-18/50,
  VGG-16) as CPU / GPU evidence, with one log term per runtime and unit (the tool-term mechanism: identified
  on M1 beside S12's Core ML rows; every tool term's prior widened to sd 0.7, bound +-1.5 for the 1-thread
  CPU; M3 got chip terms from these rows): 39.8 / 39.8 / 37.6% on the Core ML rows. S3's A13 rows stayed
  -52% / -46% when S3 was left out: ncnn orders networks differently from Core ML (VGG-16 / ResNet-50: 4.7x on
  ncnn's M1 GPU, 1.9x in S3's A13 GPU rows), so its rows do not carry the shape S3 loses, and network-out grew
  by 7.6 points.
- S3's and S12's GPU rows priced at the fp32 rate (a neural-network model's GPU path accumulates in fp32
  unless told otherwise; hollance/neural-engine docs/16-bit.md): 47.8 / 32.7 / 43.0%.
- RepViT-M0.9 ... M2.3 (S20, A14, Xcode 14) as reference models (sizes within 2% of the paper's): 49.5 / 33.6
  / 47.6%. The cost model prices the large variants 27-37% too slow in-sample (every activation read from
  DRAM: the Neural Engine's on-chip ratio sits at its lower bound 1), which pulls A14's term: three other A14
  sources (MobileOne, EfficientFormer, S22) then come out about 30% too fast when they are left out.

Tried for the TFLite rows (2026-12-03; two-start folds, against 47.7 / 34.4 / 44.9% without them; kept:
NEON's rate on the row's threads, 44.5 / 35.0 / 44.0%, the TFLite CPU rows of A11 and A12 held out -14% /
-8%):

- the spec peak (AMX from A13 on) scaled by the share of P-cores the threads use: 38.9 / 36.3 / 45.3%, but
  the same A11 / A12 rows held out +26% / +38%; S3's A13 CPU rows left out +56% in level (NEON's: -55%).
  Either way one MobileNetV1 pair on another runtime does not pin Core ML's A13 CPU level; S3's GPU rows stay
  -45% (-59% without TFLite rows).
- the spec peak for every thread count, with a term per thread count (1 / 2): 29.3 / 36.1 / 46.1% over
  all 148 rows (TFLite's included), S3's CPU level +3% left out; not kept: that level is where the prior
  splits the two terms, which only A13's pair identifies against each other (A12's 2-thread row left out
  +640%: A12's CPU peak is NEON's, A13's AMX's).

Tools fall in classes (:data:`TOOLS`); ``xcode`` (Xcode performance report, median) is the reference the
profiles predict. Row noise ``sigma`` (log scale): 0.05 for an Xcode report, 0.08 ModelBench, 0.10 a paper's
table, 0.15 an app loop (mean of hundreds of runs) or a value read off a plot, 0.30 a single app timing or a
blog post; plus the rounding of the published value (whole milliseconds in S3, 0.1 ms in S19).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from profiles._errors import ProfileError

__all__ = ["REFERENCE_DIR", "TOOLS", "load_evidence"]

#: shared/reference, beside the repository (the layout of the project's checkouts).
REFERENCE_DIR = Path(__file__).resolve().parents[2] / "shared" / "reference"
PUBLISHED = "apple-published-latencies.csv"
MORE = "apple-latencies-more.csv"
#: Tool class -> base log-noise of its rows.
TOOLS = {"xcode": 0.05, "modelbench": 0.08, "paper": 0.10, "app": 0.15}
#: Other runtimes whose rows join as evidence through a runtime term of their own (:data:`RUNTIMES`): TFLite's
#: benchmark apps (S5 A11, S6 A12, S7 A13; mean of a loop) on the CPU (NEON kernels at 1 or 2 threads: the
#: ``threads`` column) and on its GPU delegate, each a tool class, base noise that of an app loop.
RUNTIMES = {"tflite_cpu": 0.15, "tflite_gpu": 0.15}
TOOLS.update(RUNTIMES)
_TFLITE = {"S5", "S6", "S7"}
#: Timings the .md calls noisy or low-confidence (a single app timing, a blog post): their noise.
LOOSE = 0.30
_CHIPS = {
    "a11": "a11", "a12": "a12", "a13": "a13", "a14": "a14", "a15": "a15", "a16": "a16", "a17pro": "a17pro",
    "m1": "m1", "m2": "m2", "m3": "m3", "m4": "m4",
}  # fmt: skip
_OTHER_RUNTIMES = {"S5", "S6", "S7", "S8", "S10", "S11"}


def _tool(text: str) -> str:
    t = text.lower()
    if "xcode" in t:
        return "xcode"
    if "modelbench" in t:
        return "modelbench"
    if "app" in t or "blog" in t or "coreml-perf" in t:
        return "app"
    return "paper"


def _source_key(text: str) -> str:
    """A short key per publication (the .md's S-keys; the first CSV's sources by their repository/site)."""
    t = str(text)
    if re.fullmatch(r"S\d+", t):
        return {"S16": "S16-17", "S17": "S16-17"}.get(t, t)
    if t.startswith("coremltools"):
        return "coremltools-docs"
    return re.split(r"[\s:]", t, maxsplit=1)[0]


def _family(ref: str) -> str:
    """The network a reference model belongs to (widths and depths of one design are one network)."""
    families: tuple[str, ...] = ("mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large")
    families += ("mobileone", "resnet", "vgg", "densenet", "efficientnet", "alexnet")
    return next((f for f in families if ref.startswith(f)), ref)


def _more_model(model: str, width: float) -> str | None:
    m = model.lower()
    w = f"{width:g}" if width != 1 else "1.0"
    if re.match(r"mobilenet_?v2", m) and "gallery" not in m:
        return f"mobilenet_v2_{w}"
    if re.match(r"mobilenet_?v1", m) and "keras" not in m:
        return f"mobilenet_v1_{w}"
    if m.startswith("mobilenetv3-large"):
        return "mobilenet_v3_large_1.0"
    hit = re.match(r"mobileone-s(\d)", m)
    if hit:
        return f"mobileone_s{hit.group(1)}"
    hit = re.match(r"resnet-?(18|34|50|101|152)(_v1)?\b", m)
    if hit and "headless" not in m and "gallery" not in m and "arcface" not in m:
        return f"resnet{hit.group(1)}"
    hit = re.match(r"vgg-?(11|13|16|19)(_bn)?\b", m)
    if hit:
        return f"vgg{hit.group(1)}{hit.group(2) or ''}"
    hit = re.match(r"densenet-?(121|161|169|201)\b", m)
    if hit:
        return f"densenet{hit.group(1)}"
    if m.startswith("alexnet") and "(pytorch)" in m:
        return "alexnet"
    if m.startswith("efficientnet-b0"):
        return "efficientnet_b0"
    return None


def _input(text: str) -> int | None:
    m = re.match(r"\s*(\d+)", str(text)) or re.search(r"paper: (\d+)", str(text))
    return int(m.group(1)) if m else None


def _tflite(text: str) -> tuple[str, str, int] | None:
    """(units, tool class, CPU threads) of a TFLite CPU or GPU-delegate row, else None."""
    t = text.lower()
    if "tflite gpu delegate" in t:
        return "gpu", "tflite_gpu", 0
    hit = re.match(r"cpu (\d) threads? \(tflite\)", t)
    return ("cpu", "tflite_cpu", int(hit.group(1))) if hit else None


def _units(text: str) -> str | None:
    t = text.lower()
    if "tflite" in t or "ncnn" in t or "xnnpack" in t or "mps" in t or "executorch" in t:
        return None
    if "cpuonly" in t or t.startswith("cpu"):
        return "cpu"
    if "cpuandgpu" in t or t.startswith("gpu"):
        return "gpu"
    return "all"


def _sigma(tool: str, latency: float, approx: bool, step_ms: float, loose: bool = False) -> float:
    base = max(TOOLS[tool], 0.15 if approx else 0.0, LOOSE if loose else 0.0)
    rounding = step_ms / math.sqrt(12) / latency  # a value rounded to step_ms: uniform error
    return math.sqrt(base**2 + rounding**2)


def _published(df: Any) -> tuple[list[dict], list[dict]]:
    from profiles._calibrate import norm_chip, scheme_of
    from profiles.reference_models import reference_name

    keep, drop = [], []
    for _, r in df.iterrows():
        label = f"{r['model']} {r['chip']} {r['weights']}/{r['activations']} ({r['tool']})"
        scheme = scheme_of(r["weights"], r["activations"])
        if scheme is None:
            drop.append({"label": label, "reason": "sparsity is not a scheme of this toolkit"})
            continue
        ref = reference_name(str(r["model"]))
        approx = str(r.get("approx", "no")).strip().lower() in ("yes", "true", "1")
        tool = _tool(str(r["tool"]))
        ms = float(r["latency_ms"])
        units = "gpu" if norm_chip(r["chip"]) == "a11" else "all"
        keep.append(
            dict(model=ref, input=_input(r["input"]), chip=str(r["chip"]), units=units, quant=scheme,
                 tool=tool, source=_source_key(r["source"]), latency_ms=ms, label=label,
                 sigma=_sigma(tool, ms, approx, 0.01, loose=tool == "app"))
        )  # fmt: skip
    return keep, drop


def _more(df: Any) -> tuple[list[dict], list[dict]]:
    keep, drop = [], []
    for _, r in df.iterrows():
        src, cu, tool_text = str(r["source"]), str(r["compute_units"]), str(r["tool"])
        label = f"{r['model']} x{r['width']:g} @{r['input']} {r['chip']} {cu} ({src})"
        units = _units(cu)
        runtime = _tflite(cu) if src in _TFLITE else None
        if runtime:
            units = runtime[0]
        ref = _more_model(str(r["model"]), float(r["width"]))
        size = _input(r["input"])
        reason = None
        if src == "S4":
            reason = "frame-paced camera app (S4): measures the pipeline, not the model"
        elif runtime and "quant" in str(r["precision"]).lower():
            reason = "TFLite's uint8 kernels: no scheme of this toolkit"
        elif (src in _OTHER_RUNTIMES or units is None) and not runtime:
            reason = "another runtime's kernels (TFLite / ncnn / MPS / ExecuTorch), not Core ML"
        elif re.sub(r"[\s_-]", "", str(r["chip"])).lower() not in _CHIPS:
            reason = f"chip {r['chip']} is not a device class of this toolkit"
        elif ref is None:
            reason = "no reference model for this network"
        elif size is None:
            reason = "input size not stated"
        elif src == "S3" and units == "all":
            reason = "S3 .all row: ~2 ms of app and in-model preprocessing that no other A13 tool identifies"
        if reason:
            drop.append({"label": label, "reason": reason})
            continue
        tool = runtime[1] if runtime else _tool(tool_text)
        ms = float(r["latency_ms"])
        step = 1.0 if src == "S3" else (0.1 if src in ("S19", "S21") else 0.01)
        keep.append(
            dict(model=ref, input=size, chip=str(r["chip"]), units=units, quant="fp16", tool=tool,
                 threads=runtime[2] if runtime else 0, source=_source_key(src), latency_ms=ms, label=label,
                 sigma=_sigma(tool, ms, False, step, src == "S25"))
        )  # fmt: skip
    return keep, drop


def load_evidence(reference_dir: str | Path | None = None) -> tuple[Any, Any]:
    """(rows, excluded): the usable published Apple latencies and the left-out ones with their reasons."""
    import pandas as pd

    from profiles._calibrate import load_measurements

    d = Path(reference_dir) if reference_dir else REFERENCE_DIR
    paths = [d / PUBLISHED, d / MORE]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ProfileError(f"calibration data not found: {missing}; pass the folder holding {PUBLISHED}")
    keep, drop = _published(load_measurements(paths[0]))
    more = pd.read_csv(paths[1])
    k2, d2 = _more(more)
    rows = pd.DataFrame(keep + k2)
    rows["threads"] = rows["threads"].fillna(0).astype(int)
    rows["device"] = rows["chip"].map(lambda c: _CHIPS[re.sub(r"[\s_-]", "", str(c)).lower()])
    rows["family"] = rows["model"].map(_family)
    app_only = _app_timed_neural_engine(rows)
    d2 += [{"label": lab, "reason": _APP_REASON} for lab in rows.loc[app_only, "label"]]
    return rows[~app_only].reset_index(drop=True), pd.DataFrame(drop + d2)


_APP_REASON = (
    "app-timed .all row on a chip no other tool measured: the app's call overhead (~2 ms in S3) is not "
    "identified there, and the Neural Engine runs such nets in ~1 ms"
)


def _app_timed_neural_engine(rows: Any) -> Any:
    """Rows timed by an iOS app on ``all`` units (the Neural Engine) of a chip with no other tool's rows.

    macOS loops (S12, 1000 predictions) stay: their whole DenseNet-121 ``.all`` time is 1.8 ms, so the call
    overhead there is small."""
    other_tools = rows[(rows["tool"] != "app") & (rows["units"] == "all")].groupby("device").size()
    return (
        (rows["tool"] == "app")
        & (rows["units"] == "all")
        & ~rows["device"].isin(other_tools.index)
        & (rows["device"] != "a11")  # no Neural Engine for Core ML: its .all row is the GPU
        & ~rows["device"].str.startswith("m")
    )

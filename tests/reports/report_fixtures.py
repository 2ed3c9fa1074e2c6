"""Writes a small, real-looking run directory (format 1) from seeded data, for the report tests.

The layout follows the run-directory contract that `compress search` writes (DESIGN.md, "A run directory").
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from compress.model.spec import ArchSpec, HeadSpec, StageSpec

DEVICES = ("a12", "a14", "m1")
SPEED = {"a12": 1.0, "a14": 0.55, "m1": 0.42}  # latency relative to the slowest class
BUDGET_MS = 10.0
CHOSEN_LATENCY = {"a12": 9.42, "a14": 5.18, "m1": 3.96}


def _spec(width: int, depth: int, res: int) -> ArchSpec:
    stages = (
        StageSpec(width=16, depth=1, kernel=3, expand=1.0, stride=1),
        StageSpec(width=24, depth=2, kernel=3, expand=(4.0, 3.0), stride=2),
        StageSpec(width=40, depth=depth, kernel=5, expand=3.0, stride=2, se=True),
        StageSpec(width=width, depth=depth, kernel=3, expand=4.0, stride=2, act="hswish"),
    )
    heads = (
        HeadSpec("tagging", 3, (width * 6, 640)),
        HeadSpec("detection", 2, (64,)),
        HeadSpec("saliency", 1, (32,)),
    )
    return ArchSpec(resolution=res, stem=16, stages=stages, heads=heads)


def _candidate(rng: np.random.Generator, key: int | str, quality: float, latency: float) -> dict:
    width, depth, res = (80, 3, 224) if latency > 8 else (64, 2, 192)
    spec = _spec(width, depth, res)
    quant = ["fp16", "pal6", "pal4", "int8"][int(rng.integers(4))]
    disk = round(2.0 + latency * 0.6 * (0.5 if quant.startswith("pal") else 1.0), 3)
    row = {
        "trial": key,
        "quality": round(quality, 3),
        "worst_latency_ms": round(latency, 3),
        "worst_device": "a12",
        "feasible": latency <= BUDGET_MS,
    }
    for dev in DEVICES:
        row[f"latency_ms.{dev}"] = round(latency * SPEED[dev], 3)
        row[f"peak_memory_mb.{dev}"] = round(8.0 + latency * 1.7, 3)
    row.update(
        {
            "disk_mb": disk,
            "weights_mb": round(disk * 0.97, 3),
            "params": int(1.2e6 + latency * 2.1e5),
            "q.tagging.map": round(quality * 0.011, 4),
            "q.detection.map": round(quality * 0.006, 4),
            "q.detection.map50": round(quality * 0.009, 4),
            "q.saliency.max_fbeta": round(quality * 0.012, 4),
            "q.saliency.mae": round(0.2 - quality * 0.001, 4),
            "arch": spec.describe(),
            "spec": spec.to_json(),
            "prune": json.dumps({"ratio": 0.25, "scope": "expand"}),
            "quant": quant,
        }
    )
    return row


def _trials(rng: np.random.Generator, n: int) -> pd.DataFrame:
    rows = []
    for t in range(n):
        latency = float(rng.uniform(4.0, 16.0))
        quality = 30 + 28 * (1 - np.exp(-latency / 6)) + float(rng.normal(0, 2.5))
        rows.append(_candidate(rng, t, quality, latency))
    # the chosen model: trial n, best feasible quality
    chosen = _candidate(rng, n, 57.12, CHOSEN_LATENCY["a12"])
    for dev in DEVICES:
        chosen[f"latency_ms.{dev}"] = CHOSEN_LATENCY[dev]
    chosen["quant"], chosen["disk_mb"], chosen["params"] = "pal6", 4.87, 6_400_000
    rows.append(chosen)
    frame = pd.DataFrame(rows)
    frame["state"] = "COMPLETE"
    frame["datetime_complete"] = pd.date_range("2025-01-01 10:00", periods=len(frame), freq="min").astype(str)
    return frame


def _pareto(frame: pd.DataFrame) -> pd.DataFrame:
    keep = []
    for i, row in frame.iterrows():
        dominated = (
            (frame["quality"] >= row["quality"])
            & (frame["worst_latency_ms"] <= row["worst_latency_ms"])
            & ((frame["quality"] > row["quality"]) | (frame["worst_latency_ms"] < row["worst_latency_ms"]))
        ).any()
        if not dominated:
            keep.append(i)
    cols = [c for c in frame.columns if c not in ("state", "datetime_complete")]
    return frame.loc[keep, cols].sort_values("worst_latency_ms").reset_index(drop=True)


def _layers() -> pd.DataFrame:
    rows = []
    plan = [
        ("conv", "stem.conv", "backbone", "ane", 0.61),
        ("hardswish", "stem.act", "backbone", "ane", 0.05),
        ("conv_dw", "s1.b0.dw", "backbone", "ane", 0.48),
        ("conv", "s1.b0.pw", "backbone", "ane", 0.39),
        ("conv", "s2.b0.expand", "backbone", "ane", 0.72),
        ("conv_dw", "s2.b0.dw", "backbone", "ane", 0.55),
        ("conv", "s2.b1.project", "backbone", "ane", 0.41),
        ("conv", "s3.b0.expand", "backbone", "ane", 0.83),
        ("mul", "s3.b0.se.scale", "backbone", "gpu", 0.37),
        ("conv", "s3.b2.project", "backbone", "ane", 0.44),
        ("conv", "s4.b1.expand", "backbone", "ane", 0.91),
        ("adaptive_avg_pool", "tagging.pool", "tagging", "ane", 0.08),
        ("linear", "tagging.fc", "tagging", "ane", 0.36),
        ("conv", "detection.tower", "detection", "ane", 0.94),
        ("conv", "detection.heatmap", "detection", "ane", 0.31),
        ("conv", "detection.box", "detection", "ane", 0.22),
        ("upsample", "saliency.up", "saliency", "cpu", 0.66),
        ("conv", "saliency.out", "saliency", "ane", 0.28),
    ]
    for op, name, head, unit, ms in plan:
        rows.append(
            {
                "op": op,
                "name": name,
                "shapes": "[1, 40, 28, 28] -> [1, 40, 28, 28]",
                "flops": int(ms * 3.1e7),
                "bytes": int(ms * 2.4e5),
                "unit": unit,
                "ms": ms,
                "head": head,
            }
        )
    return pd.DataFrame(rows)


def _card(front: pd.DataFrame, layers: pd.DataFrame) -> dict:
    chosen = front.loc[front["latency_ms.a12"] == CHOSEN_LATENCY["a12"]].iloc[0]
    prov = {"a12": ("calibrated", 12.3), "a14": ("calibrated", 8.9), "m1": ("spec", None)}
    devices = {
        dev: {
            "latency_ms": CHOSEN_LATENCY[dev],
            "peak_memory_mb": round(18.4 + i * 0.8, 2),
            "disk_mb": 4.87,
            "weights_mb": 4.71,
            "source": prov[dev][0],
            "error_pct": prov[dev][1],
        }
        for i, dev in enumerate(DEVICES)
    }
    heads = {
        head: {
            "params": int(5e5 + i * 1.5e5),
            "disk_mb": round(0.4 + i * 0.3, 3),
            "latency_ms.a12": round(float(layers.loc[layers["head"] == head, "ms"].sum()), 3),
        }
        for i, head in enumerate(("backbone", "tagging", "detection", "saliency"))
    }
    return {
        "trial": int(chosen["trial"]),
        "arch": chosen["arch"],
        "spec": json.loads(chosen["spec"]),
        "prune": json.loads(chosen["prune"]),
        "quant": "pal6",
        "quality": {
            "aggregate": 57.85,
            "tasks": {
                "tagging": {"map": 0.681},
                "detection": {"map": 0.372, "map50": 0.551},
                "saliency": {"max_fbeta": 0.744, "mae": 0.081},
            },
        },
        "quality_before_finetune": {"aggregate": 57.12},
        "budget_ms": BUDGET_MS,
        "devices": devices,
        "heads": heads,
        "artifacts": {
            "model.mlpackage": {"disk_mb_actual": 4.93, "disk_mb_predicted": 4.87},
            "model.onnx": {"disk_mb_actual": 9.61, "disk_mb_predicted": 9.58},
        },
        "baseline": {"name": "mobilenetv3_large_050", "quality": 55.21, "worst_latency_ms": 8.77},
        "compression": [
            {"scheme": "fp32", "prune": 0.0, "params": 8_500_000, "disk_mb": 34.0, "quality": 58.61},
            {"scheme": "fp16", "prune": 0.0, "params": 8_500_000, "disk_mb": 17.0, "quality": 58.6},
            {"scheme": "fp16", "prune": 0.25, "params": 6_400_000, "disk_mb": 12.8, "quality": 58.12},
            {"scheme": "pal6", "prune": 0.25, "params": 6_400_000, "disk_mb": 4.87, "quality": 57.85},
        ],
    }


def write_run(
    root: Path, name: str = "demo", *, trials: int = 14, seed: int = 0, created: str | None = None
) -> Path:
    """Write a complete format-1 run directory under ``root`` and return its path."""
    rng = np.random.default_rng(seed)
    path = root / name
    (path / "chosen").mkdir(parents=True)
    all_trials = _trials(rng, trials)
    front = _pareto(all_trials)
    baselines = pd.concat(
        [
            pd.DataFrame([_candidate(rng, "mobilenetv3_large_050", 55.21, 8.77)]),
            pd.DataFrame([_candidate(rng, "mobilenetv3_large_075", 58.02, 11.6)]),
        ]
    ).rename(columns={"trial": "name"})
    hv = np.maximum.accumulate(rng.uniform(0.1, 1.0, len(all_trials))) * 180.0
    layers = _layers()
    meta = {
        "format": 1,
        "toolkit_version": "0.1.0",
        "created": created or "2025-01-01T10:00:00+00:00",
        "finished": "2025-01-01T10:20:00+00:00",
        "command": f"compress search --budget {BUDGET_MS:g}ms --trials {trials}",
        "config": {
            "budget_ms": BUDGET_MS,
            "devices": list(DEVICES),
            "trials": trials,
            "timeout_s": None,
            "sampler": "nsga2",
            "objectives": ["quality", "latency"],
            "memory_mb": 64.0,
            "disk_mb": None,
            "data": "builtin",
            "seed": seed,
            "study_name": name,
            "storage": f"sqlite:///{path}/study.db",
            "workers": 1,
            "space": {
                "resolution": [160, 192, 224],
                "kernel": [3, 5],
                "quant": ["fp16", "int8", "pal4", "pal6"],
            },
        },
        "versions": {"python": "3.11.9", "torch": "2.13.0", "optuna": "5.0.0", "coremltools": "9.0"},
        "supernet": {"path": "supernet.safetensors", "config_hash": "3f9a1c2b7d10", "train_minutes": 6.1},
        "provenance": {
            "a12": {"source": "calibrated", "error_pct": 12.3},
            "a14": {"source": "calibrated", "error_pct": 8.9},
            "m1": {"source": "spec", "error_pct": None},
        },
    }
    (path / "run.json").write_text(json.dumps(meta, indent=2))
    all_trials.to_csv(path / "trials.csv", index=False)
    front.to_csv(path / "front.csv", index=False)
    baselines.to_csv(path / "baselines.csv", index=False)
    pd.DataFrame({"trial_number": range(len(hv)), "hypervolume": hv.round(3)}).to_csv(
        path / "hypervolume.csv", index=False
    )
    layers.to_csv(path / "chosen/layers.csv", index=False)
    (path / "chosen/card.json").write_text(json.dumps(_card(front, layers), indent=2))
    return path

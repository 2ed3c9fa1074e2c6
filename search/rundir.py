"""The run-directory contract: what ``compress search`` writes and ``reports`` reads, in one place.

::

    runs/<name>/
      run.json            config, versions, seeds, storage URL (redacted), data spec and splits, devices, budget
      supernet.safetensors
      study.journal       the Optuna study (JournalStorage file; study.db, SQLite, in runs made before)
      trials.csv          every finished trial: candidate columns, per-device figures, quality per task
      front.csv           the feasible Pareto front (also front.parquet when pyarrow is present)
      hypervolume.csv     hypervolume after each trial
      baselines.csv       hand-scaled MobileNetV3 shapes, scored like the trials
      quality_model.json  the quality model the trials were ranked with (``search.quality``), when one applied
      chosen/             model.safetensors, model.mlpackage, model.onnx, layers.csv, card.json

Everything here is written to a temporary name and renamed (``compress.atomic``). A candidate is read back
from a table row by :func:`candidate_from_row`; :func:`best_first` is the one rule that orders candidates
(higher quality first, ties to the lower worst-device latency); :func:`head_of` names the head a cost
group of ``chosen/layers.csv`` belongs to.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from compress.atomic import write_text
from compress.model import ArchSpec
from search.space import Candidate

__all__ = [
    "BASELINES",
    "CARD",
    "CHOSEN",
    "FORMAT",
    "FRONT",
    "FRONT_PARQUET",
    "HYPERVOLUME",
    "LAYERS",
    "MODEL",
    "OBJECTIVE_COLUMNS",
    "ONNX",
    "OUTPUT_TASK",
    "PACKAGE",
    "QUALITY_MODEL",
    "RUN_JSON",
    "TRIALS",
    "best_first",
    "candidate_from_row",
    "head_of",
    "write_csv",
    "write_json",
]

FORMAT = 1
"""The run-directory format this toolkit writes and reads."""

RUN_JSON = "run.json"
TRIALS = "trials.csv"
FRONT = "front.csv"
FRONT_PARQUET = "front.parquet"
HYPERVOLUME = "hypervolume.csv"
BASELINES = "baselines.csv"
CHOSEN = "chosen"
"""The chosen model's folder; the names below it:"""
CARD = "card.json"
LAYERS = "layers.csv"
MODEL = "model.safetensors"
PACKAGE = "model.mlpackage"
ONNX = "model.onnx"
QUALITY_MODEL = "quality_model.json"

OBJECTIVE_COLUMNS = {
    "quality": "quality",
    "latency": "worst_latency_ms",
    "memory": "worst_memory_mb",
    "disk": "disk_mb",
}
"""The ``trials.csv`` column each objective of ``--objectives`` reads."""

OUTPUT_TASK = {"tags": "tagging", "det_heatmap": "detection", "det_box": "detection", "saliency": "saliency"}
"""The task of each model output (``compress.model.HEAD_OUTPUTS`` inverted; a test keeps them equal)."""


def write_json(path: Path, data: dict[str, Any]) -> None:
    """``data`` as indented JSON, atomically (unique temporary name + rename)."""
    write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str))


def write_csv(df: pd.DataFrame, path: Path) -> None:
    """``df`` as CSV without its index, atomically."""
    write_text(path, df.to_csv(index=False))


def best_first(rows: pd.DataFrame, quality: str = "quality") -> pd.DataFrame:
    """``rows`` ordered by the choice rule: highest ``quality`` first, ties to the lower worst-device latency."""
    return rows.sort_values([quality, "worst_latency_ms"], ascending=[False, True])


def candidate_from_row(row: pd.Series | dict[str, Any]) -> Candidate:
    """The candidate a ``trials.csv`` / ``front.csv`` / ``baselines.csv`` row describes (``spec`` JSON,
    ``prune`` as comma-separated ratios, ``quant``)."""
    prune = tuple(float(x) for x in str(row["prune"]).split(","))
    return Candidate(ArchSpec.from_json(row["spec"]), prune, str(row["quant"]))


def head_of(group: str) -> str:
    """The head a cost group of ``profiles.Cost.layers`` belongs to: ``shared`` is the backbone, ``tags``
    tagging, ``det_heatmap+det_box`` detection; layers that feed several heads are
    ``backbone (detection+tagging)`` (tasks in alphabetical order)."""
    if group == "shared":
        return "backbone"
    tasks = sorted({OUTPUT_TASK.get(key, key) for key in group.split("+") if key})
    if not tasks:
        return "backbone"
    return tasks[0] if len(tasks) == 1 else f"backbone ({'+'.join(tasks)})"

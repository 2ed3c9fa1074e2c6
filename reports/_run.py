"""Reading a run directory (format 1) into a :class:`Run`, with errors that say what is missing.

The directory is written by ``compress search``; its contract (format, file names, the head of each cost
group) is ``search.rundir``, imported here, never copied::

    run.json  front.csv  trials.csv  baselines.csv  hypervolume.csv  chosen/card.json  chosen/layers.csv

Optional columns (per-task quality ``q.*``) and optional card keys (``heads``, ``artifacts``, ``baseline``,
``compression``, ``quality_before_finetune``) are shown when present.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from compress.errors import RunError
from search.redaction import redact, redact_text
from search.rundir import (
    BASELINES,
    CARD,
    CHOSEN,
    FORMAT,
    FRONT,
    HYPERVOLUME,
    LAYERS,
    RUN_JSON,
    TRIALS,
    head_of,
)

__all__ = ["FORMAT", "Run", "latest_run", "load_run"]

_CARD = f"{CHOSEN}/{CARD}"
_LAYERS = f"{CHOSEN}/{LAYERS}"
_FILES = (FRONT, TRIALS, BASELINES, HYPERVOLUME, _CARD, _LAYERS)
_CANDIDATE_COLUMNS = (
    "quality",
    "worst_latency_ms",
    "worst_device",
    "feasible",
    "disk_mb",
    "weights_mb",
    "params",
    "arch",
    "spec",
    "prune",
    "quant",
)
_PER_DEVICE = ("latency_ms", "peak_memory_mb")
_LAYER_COLUMNS = ("op", "name", "flops", "unit", "ms", "head")
_CARD_KEYS = ("trial", "arch", "quant", "quality", "budget_ms", "devices")
_DEVICE_KEYS = ("latency_ms", "peak_memory_mb", "disk_mb", "source")


@dataclass(frozen=True, eq=False)
class Run:
    """One search run as read from its directory: the config, the tables and the chosen model's card.

    ``meta`` is run.json whole and ``config`` its ``config`` object; the DataFrames hold the CSV files as
    written; ``card`` is chosen/card.json.
    """

    path: Path
    meta: dict[str, Any]
    front: pd.DataFrame
    trials: pd.DataFrame
    baselines: pd.DataFrame
    hypervolume: pd.DataFrame
    card: dict[str, Any]
    layers: pd.DataFrame
    config: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "config", dict(self.meta.get("config") or {}))

    @property
    def name(self) -> str:
        """The run's name: its directory name."""
        return self.path.name

    @property
    def devices(self) -> list[str]:
        """The device classes the run targeted, in the config's order."""
        return [str(d) for d in self.config.get("devices") or self.card["devices"]]

    @property
    def budget_ms(self) -> float:
        """The latency budget on the slowest device, in milliseconds."""
        return float(self.config.get("budget_ms", self.card["budget_ms"]))

    @property
    def slowest_device(self) -> str:
        """The device on which the chosen model is slowest (the one ``chosen/layers.csv`` describes)."""
        devices = self.card["devices"]
        return max(devices, key=lambda d: float(devices[d]["latency_ms"]))

    @property
    def quality_note(self) -> str:
        """What the trials' quality column holds: the quality model's prediction of the trained quality (with
        its held-out error), or the inherited score (runs without a calibration, and runs made before)."""
        qm = self.meta.get("quality_model") or {}
        if "slope" in qm:
            form = qm.get("form", "aggregate")
            others = ", ".join(f"{k} {v:.2f}" for k, v in (qm.get("alternatives") or {}).items())
            chosen = f" Form: {form}, the lower leave-one-out error of {others}." if others else ""
            return (
                f"Trial quality: {qm['scoring']}; the model is refitted on this run's supernet (leave-one-shape-out "
                f"|error| {qm['loo_mae']:.1f} mean, {qm['loo_max']:.1f} worst, quality points).{chosen}"
            )
        why = qm.get("scoring", "scored as inherited")
        return f"Trial quality: {why}: supernet weights, BN recalibrated, on the validation subset."

    @property
    def provenance(self) -> dict[str, dict[str, Any]]:
        """Per device: where its predicted figures come from (``source``, ``error_pct``)."""
        prov = {d: dict(v) for d, v in (self.meta.get("provenance") or {}).items()}
        for dev, fig in self.card["devices"].items():
            prov.setdefault(dev, {"source": fig.get("source"), "error_pct": fig.get("error_pct")})
        return prov


def load_run(path: str | Path) -> Run:
    """Read the run directory at ``path``.

    Raises :class:`~compress.errors.RunError` naming the file, key or column that is missing, or the
    format when the directory was written by another version of the toolkit.
    """
    root = Path(path)
    meta = _read_meta(root)
    missing = [name for name in _FILES if not (root / name).is_file()]
    if missing:
        resume = meta.get("command") or "compress search"
        raise RunError(
            f"{root} is incomplete: {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing "
            f"(`compress search` writes them as the search finishes; rerun or resume it: {resume})"
        )
    devices = [str(d) for d in (meta.get("config") or {}).get("devices") or ()]
    per_device = [f"{k}.{d}" for d in devices for k in _PER_DEVICE]
    front = _read_csv(root, FRONT, ("trial", *_CANDIDATE_COLUMNS, *per_device))
    trials = _read_csv(root, TRIALS, ("trial", "state", *_CANDIDATE_COLUMNS, *per_device))
    baselines = _read_csv(root, BASELINES, ("name", *_CANDIDATE_COLUMNS, *per_device))
    hypervolume = _read_csv(root, HYPERVOLUME, ("trial_number", "hypervolume"))
    layers = _read_layers(root)
    card = _read_card(root)
    for frame in (front, trials, baselines):
        frame["feasible"] = frame["feasible"].map(_as_bool)
    return Run(
        path=root,
        meta=meta,
        front=front,
        trials=trials,
        baselines=baselines,
        hypervolume=hypervolume,
        card=card,
        layers=layers,
    )


def latest_run(root: str | Path = "runs") -> Path:
    """The most recently created run directory under ``root`` (by run.json's ``created``, then mtime)."""
    base = Path(root)
    runs = sorted(p for p in base.glob(f"*/{RUN_JSON}") if p.is_file()) if base.is_dir() else []
    if not runs:
        raise RunError(
            f"no runs under {base}/ (a run directory holds run.json; create one with "
            "`compress search --budget 10ms`, or give RUN_DIR)"
        )
    return max(runs, key=_created_key).parent


def _created_key(run_json: Path) -> tuple[str, float]:
    try:
        created = str(json.loads(run_json.read_text()).get("created") or "")
    except (OSError, ValueError, AttributeError):
        created = ""
    return created, run_json.stat().st_mtime


def _read_meta(root: Path) -> dict[str, Any]:
    if not root.exists():
        raise RunError(
            f"{root} does not exist (give a run directory written by `compress search`, "
            "or omit RUN_DIR for the latest run under runs/)"
        )
    if not root.is_dir():
        raise RunError(
            f"{root} is not a run directory: it is a file (give the directory that holds run.json)"
        )
    meta_path = root / RUN_JSON
    if not meta_path.is_file():
        raise RunError(
            f"{root} is not a run directory: run.json is missing (create one with `compress search`)"
        )
    meta = _read_json(meta_path, RUN_JSON)
    fmt = meta.get("format")
    if fmt is None:
        raise RunError(
            f"{meta_path} has no 'format' field; this toolkit reads format {FORMAT} (rerun `compress search`)"
        )
    if fmt != FORMAT:
        raise RunError(
            f"run.json format {fmt} is not supported; this toolkit reads format {FORMAT} "
            f"(written by toolkit {meta.get('toolkit_version', '?')}; rerun `compress search`, "
            "or report it with that toolkit version)"
        )
    config = meta.get("config")
    if not isinstance(config, dict) or "budget_ms" not in config or not config.get("devices"):
        raise RunError(
            f"{meta_path} needs a 'config' object with 'budget_ms' and 'devices', but got {config!r}"
        )
    return _redacted(meta)


def _redacted(meta: dict[str, Any]) -> dict[str, Any]:
    """run.json with its command line and storage URL redacted (runs written before redaction was complete)."""
    meta = dict(meta)
    if isinstance(meta.get("command"), str):
        meta["command"] = redact_text(meta["command"])
    config = dict(meta["config"])
    if isinstance(config.get("storage"), str):
        config["storage"] = redact(config["storage"])
    meta["config"] = config
    return meta


def _read_json(path: Path, label: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise RunError(f"{path} is not valid JSON ({exc}); the run directory is damaged") from exc
    if not isinstance(data, dict):
        raise RunError(f"{label} must hold a JSON object, but {path} holds {type(data).__name__}")
    return data


def _read_csv(root: Path, name: str, required: tuple[str, ...]) -> pd.DataFrame:
    path = root / name
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        frame = pd.DataFrame()
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise RunError(f"{path} cannot be read as CSV ({exc}); the run directory is damaged") from exc
    _require(path, frame, required)
    return frame


def _require(path: Path, frame: pd.DataFrame, required: tuple[str, ...]) -> None:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise RunError(
            f"{path} is missing column(s) {missing} (format {FORMAT} needs them; "
            "was it written by another version of the toolkit? rerun `compress search`)"
        )


def _read_layers(root: Path) -> pd.DataFrame:
    """``chosen/layers.csv``: ``profiles.Cost.layers`` plus ``head``. ``output`` (``shared`` = the backbone)
    stands in for a missing ``head``; ``shapes`` is built from ``input_shapes``/``output_shape`` if absent."""
    frame = _read_csv(root, _LAYERS, ())
    if "head" not in frame.columns and "output" in frame.columns:
        frame["head"] = [head_of(str(group)) for group in frame["output"]]
    _require(root / _LAYERS, frame, _LAYER_COLUMNS)
    if "bytes" not in frame.columns:
        frame["bytes"] = float("nan")
    if "shapes" not in frame.columns:
        parts = [frame[c].astype(str) for c in ("input_shapes", "output_shape") if c in frame.columns]
        frame["shapes"] = parts[0] + " -> " + parts[1] if len(parts) == 2 else ""
    return frame


def _read_card(root: Path) -> dict[str, Any]:
    path = root / _CARD
    card = _read_json(path, _CARD)
    missing = [k for k in _CARD_KEYS if k not in card]
    if missing:
        raise RunError(
            f"{path} is missing key(s) {missing} (format {FORMAT} needs them; rerun `compress search`)"
        )
    devices = card["devices"]
    if not isinstance(devices, dict) or not devices:
        raise RunError(f"{path}: 'devices' must map each device to its figures, but got {devices!r}")
    for dev, figures in devices.items():
        lacking = [k for k in _DEVICE_KEYS if k not in (figures or {})]
        if lacking:
            raise RunError(f"{path}: devices.{dev} is missing key(s) {lacking}")
    if not isinstance(card["quality"], dict) or "aggregate" not in card["quality"]:
        raise RunError(f"{path}: 'quality' must be an object with 'aggregate', but got {card['quality']!r}")
    return card


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value) if value == value else False

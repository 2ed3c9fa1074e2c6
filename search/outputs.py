"""What a search leaves in its run directory: CSV tables, the chosen candidate and its deployable artifacts.

Files (the run-directory contract read by ``reports``): ``trials.csv`` (every finished trial), ``front.csv``
(the feasible Pareto front, also Parquet when pyarrow is present), ``hypervolume.csv``, ``baselines.csv``
(hand-scaled MobileNetV3 shapes, same scorer), and ``chosen/`` with ``model.safetensors`` (ArchSpec JSON +
safetensors), ``model.mlpackage``, ``model.onnx``, ``layers.csv`` (per-layer cost on the slowest device) and
``card.json``. The chosen candidate is the highest-quality feasible one, ties to lower worst-device latency.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from compress.errors import RunError
from search.space import Candidate

__all__ = ["choose", "write_outputs"]


def _atomic_csv(df: pd.DataFrame, path: Path) -> None:
    from compress._atomic import write_text

    write_text(path, df.to_csv(index=False))  # a unique temporary name, then rename


def choose(front: pd.DataFrame) -> pd.Series | None:
    """Highest quality among the feasible rows; ties go to the lower worst-device latency."""
    feasible = front[front["feasible"]] if "feasible" in front else front
    if feasible.empty:
        return None
    return feasible.sort_values(["quality", "worst_latency_ms"], ascending=[False, True]).iloc[0]


def _candidate(row: pd.Series) -> Candidate:
    from compress.model import ArchSpec

    prune = tuple(float(x) for x in str(row["prune"]).split(","))
    return Candidate(ArchSpec.from_json(row["spec"]), prune, str(row["quant"]))


def _baselines(cfg: Any, space: Any, scorer: Any, limits: Any, path: Path, progress: bool) -> pd.DataFrame:
    from search.baselines import baseline_candidates

    if path.exists():
        old = pd.read_csv(path)
        if "feasible" in old and "name" in old:
            old["feasible"] = [limits.feasible(r) for r in old.to_dict("records")]
            return old
    rows = []
    cands = baseline_candidates(space)
    for i, (name, cand) in enumerate(cands.items()):
        if progress:
            print(
                f"\rscoring hand-scaled baselines {i + 1}/{len(cands)}", end="", flush=True, file=sys.stderr
            )
        score = scorer.score(cand)
        row = {"name": name, **score.row()}
        row["feasible"] = limits.feasible(row)
        rows.append(row)
    if progress:
        print(file=sys.stderr)
    df = pd.DataFrame(rows)
    _atomic_csv(df, path)
    return df


def _nothing_feasible(trials: pd.DataFrame, cfg: Any) -> RunError:
    if trials.empty:
        return RunError(
            f"no trial finished in {cfg.run_dir} (see the trials' fail reasons in the study); "
            "rerun the same command to continue"
        )
    closest = trials.sort_values("worst_latency_ms").head(3)
    names = "; ".join(
        f"trial {int(r.trial)} needs {r.worst_latency_ms:.2f} ms on {r.worst_device} "
        f"(quality {r.quality:.1f})"
        for r in closest.itertuples()
    )
    return RunError(
        f"no candidate meets the {cfg.budget_ms:g} ms budget on every device; closest: {names}. "
        f"Raise --budget or narrow --devices; the study is kept in {cfg.run_dir}"
    )


def write_outputs(cfg: Any, space: Any, study: Any, scorer: Any, *, progress: bool = True) -> Any:
    """Write the tables, pick the chosen candidate, finalize it; raise RunError when nothing is feasible."""
    from search.run import SearchResult, _write_json
    from search.study import front_frame, hypervolume_history, reference_point, trials_frame

    run_dir, limits = cfg.run_dir, cfg.limits()
    trials = trials_frame(study, limits)
    _atomic_csv(trials, run_dir / "trials.csv")
    front = front_frame(study, trials)
    _atomic_csv(front, run_dir / "front.csv")
    try:
        from compress._atomic import write_bytes

        write_bytes(run_dir / "front.parquet", front.to_parquet(index=False))  # pip install '.[parquet]'
    except ImportError:
        pass
    hv = hypervolume_history(trials, cfg.objectives, reference_point(cfg.objectives, limits, trials))
    _atomic_csv(hv, run_dir / "hypervolume.csv")
    baselines = _baselines(cfg, space, scorer, limits, run_dir / "baselines.csv", progress)
    row = choose(front)
    if row is None:
        raise _nothing_feasible(trials, cfg)
    card = None
    if cfg.finalize:
        from search.finalize import finalize

        card = finalize(cfg, _candidate(row), int(row["trial"]), scorer, baselines, progress=progress)
    meta_path = run_dir / "run.json"
    meta = json.loads(meta_path.read_text())
    meta["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    _write_json(meta_path, meta)
    return SearchResult(run_dir, trials, front, row.to_dict(), card)

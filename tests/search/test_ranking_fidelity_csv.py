"""benchmarks/ranking_fidelity.py keeps every standalone result it was given: a rerun stopped halfway must not
drop rows of candidates it has not reached yet (each took minutes of training)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pandas as pd

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _module():
    sys.path.insert(0, str(BENCH))
    try:
        return importlib.import_module("ranking_fidelity")
    finally:
        sys.path.remove(str(BENCH))


def _row(arch: str, seed: int, value: float, steps: int = 300) -> dict:
    return {"name": arch, "arch": arch, "standalone": value, "steps": steps, "seed": seed}


def test_a_rerun_stopped_halfway_keeps_the_rows_it_has_not_reached() -> None:
    earlier = pd.DataFrame(
        [
            _row("a", 1, 50.0),
            _row("b", 1, 51.0),
            _row("c", 1, 52.0),
            _row("a", 0, 49.0),
            _row("a", 1, 1.0, 40),
        ]
    )
    merged = _module().merge_rows(earlier, [_row("a", 1, 50.5)], steps=300, seed=1)
    got = {(r.arch, r.seed, r.steps): r.standalone for r in merged.itertuples()}
    assert got == {
        ("a", 1, 300): 50.5,  # rewritten by this run, once
        ("b", 1, 300): 51.0,  # not reached yet: kept
        ("c", 1, 300): 52.0,
        ("a", 0, 300): 49.0,  # another seed
        ("a", 1, 40): 1.0,  # another step count
    }


def test_a_first_run_writes_its_rows() -> None:
    merged = _module().merge_rows(
        pd.DataFrame(columns=["steps", "seed"]), [_row("a", 0, 50.0)], steps=300, seed=0
    )
    assert list(merged["arch"]) == ["a"]


def test_searched_trials_spread_over_latency_values_not_over_the_trials_order() -> None:
    """A search steered toward the budget leaves most trials in a narrow band there; the benchmark's candidates
    must still reach the few far from it (every k-th trial by latency order would give near-equal ones)."""
    import numpy as np

    rng = np.random.default_rng(0)
    near = rng.uniform(4.0, 9.0, 40)  # the band the search concentrated on
    far = np.array([14.0, 16.0, 18.0, 28.0, 35.0])
    ms = np.concatenate([near, far])
    trials = pd.DataFrame(
        {
            "trial": range(len(ms)),
            "worst_latency_ms": ms,
            "prune": ["0,0,0.25,0" if i % 3 == 0 else "0,0,0,0" for i in range(len(ms))],
            "quant": ["pal4" if i % 2 else "fp16" for i in range(len(ms))],
        }
    )
    picked = _module()._searched(trials, 12)
    assert len(picked) == 12 and picked["trial"].is_unique
    assert (picked["worst_latency_ms"] > 10).sum() >= 4  # 4 of the 5 far trials (their log range is half)
    assert picked["worst_latency_ms"].min() == ms.min() and picked["worst_latency_ms"].max() == ms.max()
    pruned = picked["prune"].map(lambda p: any(float(x) > 0 for x in p.split(",")))
    assert pruned.sum() >= 2 and (picked["quant"] != "fp16").sum() >= 2
    assert len(_module()._searched(trials, 0)) == 0 and len(_module()._searched(trials, 1)) == 1


def test_eval_images_widens_validation_and_keeps_the_runs_calibration_images(tiny_search_config) -> None:
    """``--eval-images``: the candidates are scored on more validation images, BN recalibrated on the same
    training images as the run's search (so only the image count differs between the two figures)."""
    import torch

    from compress.model import Supernet, default_space
    from search.scorer import Scorer

    cfg = tiny_search_config
    scorer = Scorer(
        Supernet(default_space()), data=cfg.data, devices=[], eval_images=4, cache_dir=cfg.cache_dir
    )
    before = scorer.calibration(96).clone()
    assert len(scorer.val(96)) == 4
    _module()._widen_validation(scorer, 0, [96])
    assert len(scorer.val(96)) == 8  # every validation image of the tiny data
    assert torch.equal(scorer.calibration(96), before)
    _module()._widen_validation(scorer, 6, [96])
    assert len(scorer.val(96)) == 6
    assert torch.equal(scorer.calibration(96), before)


def test_a_reused_result_keeps_its_float_quality(tmp_path: Path) -> None:
    """``--reuse`` carries the trained float model's quality with the result, so the scheme's loss after training
    is printed for reused candidates too."""
    csv = tmp_path / "rf.csv"
    pd.DataFrame(
        [
            _row("a", 0, 50.0) | {"standalone_fp16": 50.4, "train_s": 3.0},
            _row("b", 0, 51.0) | {"train_s": 2.0},
        ]
    ).to_csv(csv, index=False)
    found = _module()._standalone_results([csv], steps=300, seed=0)
    assert found["a"]["standalone_fp16"] == 50.4 and found["a"]["standalone"] == 50.0
    assert "standalone_fp16" not in found["b"]  # a float candidate has no scheme to lose

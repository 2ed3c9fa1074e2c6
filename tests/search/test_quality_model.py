"""The search's quality model (search.quality): fitted within its physical bounds, validated by leaving each
calibration shape out, stored without pickle, refused when it belongs to other data, and used by a real search
to rank its trials."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from compress.errors import ConfigError
from search.quality import (
    SAMPLES,
    SHAPES,
    QualityCalibration,
    QualityModel,
    ShapeResult,
    applicable,
    calibration_hash,
    fit_quality_model,
    resolve_calibration,
)


def _calibration(quality, *, data_sha256="abc", flops=None) -> QualityCalibration:
    flops = flops or [40e6, 55e6, 115e6, 155e6, 200e6, 240e6]
    shapes = tuple(
        ShapeResult(name=n, arch=n, flops=f, seed=0, quality=q, seconds=1.0)
        for n, f, q in zip(SHAPES, flops, quality, strict=True)
    )
    return QualityCalibration(data="builtin", data_sha256=data_sha256, steps=300, recipe={}, shapes=shapes)


def test_the_fit_recovers_a_compute_law_and_its_held_out_error_is_that_of_the_left_out_shapes() -> None:
    flops = [40e6, 55e6, 115e6, 155e6, 200e6, 240e6]
    truth = [10 + 5 * math.log(f / 1e6) for f in flops]
    inherited = dict(zip(SHAPES, [44.0, 45.0, 44.5, 47.0, 46.0, 45.5], strict=True))  # no information
    model = fit_quality_model(_calibration(truth, flops=flops), inherited)
    assert model.slope == pytest.approx(5.0, rel=1e-3)
    assert model.weight == pytest.approx(0.0, abs=1e-3)
    assert model.loo_mae < 1e-3 and model.shapes == 6
    # the scheme's loss is subtracted point for point
    assert model.predict(100e6, 45.0, 44.0) == pytest.approx(model.predict(100e6, 45.0, 45.0) - 1.0)


def test_tasks_that_follow_their_own_laws_are_fitted_per_task_when_that_predicts_left_out_shapes_better() -> (
    None
):
    """Each task's metric has its own law in compute and in its own inherited metric: one line through the
    aggregate cannot hold them, the per-task form does, and the lower leave-one-out error picks it."""
    import numpy as np

    rng = np.random.default_rng(0)
    names = [*SHAPES, "space-00", "space-01", "space-02"]
    flops = np.exp(rng.uniform(math.log(20e6), math.log(250e6), len(names)))
    inh = {n: {"tagging": rng.uniform(40, 60), "detection": rng.uniform(2, 8), "saliency": rng.uniform(70, 90)}
           for n in names}  # fmt: skip

    def law(f: float, t: dict[str, float]) -> dict[str, float]:
        return {
            "tagging": -20 + 4 * math.log(f) + 0.2 * t["tagging"],
            "detection": -15 + 1 * math.log(f),
            "saliency": 10 + 0.9 * t["saliency"],
        }

    shapes = []
    for n, f in zip(names, flops, strict=True):
        tasks = law(f, inh[n])
        shapes.append(ShapeResult(n, n, float(f), 0, float(np.mean(list(tasks.values()))), 1.0, tasks=tasks))
    cal = QualityCalibration(data="builtin", data_sha256="abc", steps=300, recipe={}, shapes=tuple(shapes))
    inherited = {n: float(np.mean(list(t.values()))) for n, t in inh.items()}
    model = fit_quality_model(cal, inherited, inh)
    assert (
        model.form == "per-task" and model.alternatives["per-task"] < 1e-3 < model.alternatives["aggregate"]
    )
    assert model.loo_mae == pytest.approx(model.alternatives["per-task"])
    assert model.tasks["tagging"] == pytest.approx([4.0, 0.2, -20.0], abs=1e-3)
    new = {"tagging": 50.0, "detection": 5.0, "saliency": 80.0}
    truth = float(np.mean(list(law(100e6, new).values())))
    assert model.predict(100e6, 45.0, 44.0, new) == pytest.approx(
        truth - 1.0, abs=1e-3
    )  # minus the scheme's loss
    # a candidate with other heads, or no per-task scores: the aggregate line
    assert model.predict(100e6, 45.0, 45.0, {"tagging": 50.0}) == pytest.approx(
        model.predict(100e6, 45.0, 45.0)
    )
    assert QualityModel.from_dict(json.loads(json.dumps(model.to_dict()))) == model
    # without per-task results (calibrations written before them): the aggregate form alone
    old = fit_quality_model(
        _calibration([40.0, 44.0, 50.0, 52.0, 55.0, 57.0]), dict.fromkeys(SHAPES, 44.0), inh
    )
    assert old.form == "aggregate" and list(old.alternatives) == ["aggregate"]


def test_more_compute_never_predicts_less_even_when_the_shapes_say_so() -> None:
    falling = [
        60.0,
        58.0,
        55.0,
        54.0,
        52.0,
        50.0,
    ]  # quality falling with compute: the slope stays at its bound
    inherited = dict(zip(SHAPES, [44.0, 45.0, 44.5, 47.0, 46.0, 45.5], strict=True))
    model = fit_quality_model(_calibration(falling), inherited)
    assert model.slope == pytest.approx(0.0, abs=1e-9) and model.weight >= 0.0
    assert model.loo_mae > 0  # and the held-out error says how badly it fits


def test_too_few_shapes_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="at least 4"):
        fit_quality_model(_calibration([50.0] * 6), {SHAPES[0]: 44.0, SHAPES[1]: 45.0})


def test_the_calibration_round_trips_as_json_and_a_bad_file_is_one_clear_error(tmp_path) -> None:
    cal = _calibration([50.0, 51.0, 55.0, 57.0, 58.0, 60.0])
    cal.save(tmp_path / "cal.json")
    assert QualityCalibration.load(tmp_path / "cal.json") == cal
    assert calibration_hash(QualityCalibration.load(tmp_path / "cal.json")) == calibration_hash(cal)
    (tmp_path / "bad.json").write_text('{"format": 1, "shapes": [{"name": "x"}]}')
    with pytest.raises(ConfigError, match="malformed"):
        QualityCalibration.load(tmp_path / "bad.json")
    body = json.loads((tmp_path / "cal.json").read_text())
    body["shapes"][0]["tasks"] = {
        "tagging": "high",
        "saliency": 80.0,
    }  # read by the fit only after the supernet
    (tmp_path / "bad_tasks.json").write_text(json.dumps(body))
    with pytest.raises(ConfigError, match="malformed.*finite numbers"):
        QualityCalibration.load(tmp_path / "bad_tasks.json")
    with pytest.raises(ConfigError, match="calibrate-quality"):
        resolve_calibration(str(tmp_path / "missing.json"))
    few = QualityCalibration(**{**cal.__dict__, "shapes": cal.shapes[:3]})
    few.save(tmp_path / "few.json")
    with pytest.raises(ConfigError, match="at least 4"):  # refused when read, before any training
        resolve_calibration(str(tmp_path / "few.json"))
    assert resolve_calibration("none") is None


def test_a_calibration_of_other_data_is_refused_when_named_and_skipped_when_automatic() -> None:
    cal = _calibration([50.0] * 6, data_sha256="abc")
    assert applicable(cal, "cal.json", data="builtin", data_sha256="abc")[0] is cal
    with pytest.raises(ConfigError, match="not on this run's"):
        applicable(cal, "cal.json", data="coco:x", data_sha256="def")
    used, why = applicable(cal, "auto", data="coco:x", data_sha256="def")
    assert used is None and "inherited" in why


def test_the_model_round_trips_through_its_dict() -> None:
    model = QualityModel(slope=5.0, weight=0.1, intercept=-10.0, loo_mae=1.0, loo_max=2.0, shapes=6)
    assert QualityModel.from_dict(json.loads(json.dumps(model.to_dict()))) == model
    # quality_model.json adds its calibration's summary; the workers read the model back from it
    assert QualityModel.from_dict({**model.to_dict(), "calibration": {"steps": 300}}) == model


def test_a_run_without_quality_model_json_was_scored_by_the_inherited_score(tmp_path) -> None:
    assert QualityModel.of_run(tmp_path) is None


@pytest.mark.slow
def test_a_search_with_a_calibration_ranks_its_trials_by_the_prediction(tiny_search_config, tmp_path) -> None:
    import dataclasses

    from compress.data import load_splits
    from search import run_search
    from search._identity import content_hash

    cfg = tiny_search_config
    splits = load_splits(cfg.data, resolution=cfg.train.resolution, cache_dir=cfg.cache_dir, progress=False)
    cal = _calibration(
        [40.0, 42.0, 47.0, 50.0, 52.0, 53.0], data_sha256=content_hash(splits.train, splits.val)
    )
    cal.save(tmp_path / "cal.json")
    cfg = dataclasses.replace(cfg, out=tmp_path / "run", quality_calibration=str(tmp_path / "cal.json"))
    result = run_search(cfg, progress=False)
    model = json.loads((result.run_dir / "quality_model.json").read_text())
    assert model["slope"] > 0 and model["shapes"] == 6
    assert QualityModel.from_dict(model).slope == model["slope"]  # what a --workers process reads
    assert QualityModel.of_run(result.run_dir) == QualityModel.from_dict(model)
    trials = pd.read_csv(result.run_dir / "trials.csv")
    assert {"quality_inherited", "quality_inherited_fp16", "flops"} <= set(trials.columns)
    assert len(trials) == 3
    for _, row in trials.iterrows():  # the formula on each trial's own figures, its scheme's loss subtracted
        fp16, inherited = row["quality_inherited_fp16"], row["quality_inherited"]
        expect = model["intercept"] + model["slope"] * math.log(row["flops"]) + model["weight"] * fp16
        assert row["quality"] == pytest.approx(expect - (fp16 - inherited), rel=1e-6)
        if row["quant"] == "fp16":
            assert fp16 == inherited
    from search.storage import load_study

    saved = load_study(cfg.storage_url, cfg.name).user_attrs["config"]
    assert saved["quality_calibration_sha256"] == calibration_hash(cal)  # another calibration: another study
    run = json.loads((result.run_dir / "run.json").read_text())
    assert run["quality_model"]["scoring"].startswith("predicted trained quality")
    assert run["config"]["quality_calibration"] == str(tmp_path / "cal.json")


@pytest.mark.slow
def test_the_shipped_calibration_belongs_to_todays_builtin_data_and_its_smallest_shape_reproduces() -> None:
    """search/calibration/builtin.json was written by `compress calibrate-quality`: it must still describe the
    built-in data (a changed generator makes every default run fall back to the inherited score), and
    retraining its smallest shape the same way must give the quality it records. It was written on 2 threads;
    another CPU's kernels round differently and 300 steps amplify that, so the tolerance is the spread between
    two seeds of one shape (up to ~3 points in benchmarks/ranking_fidelity.py), not zero."""
    import torch

    from compress.data import load_splits
    from compress.model import Supernet, default_space
    from compress.training import TrainConfig
    from search._identity import content_hash
    from search.baselines import baseline_candidates
    from search.finalize import train_candidate
    from search.quality import BUILTIN_CALIBRATION, space_samples
    from search.scorer import Scorer
    from search.space import load_space

    cal = QualityCalibration.load(BUILTIN_CALIBRATION)
    drawn = [f"space-{k:02d}" for k in range(SAMPLES)]
    assert [s.name for s in cal.shapes] == [*SHAPES, *drawn] and cal.data == "builtin"
    splits = load_splits("builtin", resolution=TrainConfig().resolution, progress=False)
    assert cal.data_sha256 == content_hash(splits.train, splits.val), "rerun `compress calibrate-quality`"
    smallest = min(cal.shapes, key=lambda s: s.flops)
    classes = splits.train.num_classes
    scorer = Scorer(Supernet(default_space(num_classes=classes)), data="builtin", devices=[])
    space = load_space(None, num_classes=classes)
    drawn = {c.describe() for c in space_samples(space, scorer, SAMPLES).values()}
    assert {s.arch for s in cal.shapes if s.name.startswith("space-")} == drawn  # today's draw
    cand = smallest.rebuild(baseline_candidates(space))
    assert cand.describe() == smallest.arch
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        trained = train_candidate(scorer, cand, steps=cal.steps, seed=smallest.seed, init="scratch")
    finally:
        torch.set_num_threads(threads)
    assert trained.val_trained.aggregate == pytest.approx(smallest.quality, abs=3.0)


def test_space_samples_are_a_fixed_fp16_draw_spread_over_compute_with_pruned_ones() -> None:
    from compress.model import Supernet, default_space
    from search.quality import graph_flops, space_samples
    from search.scorer import Scorer
    from search.space import load_space

    space = load_space(None, num_classes=12)
    scorer = Scorer(Supernet(default_space(num_classes=12)), data="builtin", devices=[])
    first = space_samples(space, scorer, 4)
    assert list(first) == ["space-00", "space-01", "space-02", "space-03"]
    assert {c.describe() for c in first.values()} == {
        c.describe() for c in space_samples(space, scorer, 4).values()
    }
    assert all(c.quant == "fp16" for c in first.values()) and any(any(c.prune) for c in first.values())
    flops = [graph_flops(scorer.build(c, quantize=False)) for c in first.values()]
    assert flops == sorted(flops) and flops[-1] > 4 * flops[0]  # spread over compute, not bunched
    assert space_samples(space, scorer, 0) == {}


def test_calibration_keeps_what_its_file_holds_and_trains_only_the_rest(
    tiny_search_config, tmp_path, monkeypatch
):
    """A stopped calibration resumes: the file is rewritten after every shape, and a rerun trains only the
    architectures it does not hold (same data, steps and seed); other steps start over."""
    from types import SimpleNamespace

    import search.finalize
    from compress.metrics import Quality
    from search.quality import calibrate_quality

    trained: list[str] = []

    def fake_train(scorer, cand, *, steps, seed, init, label=""):
        assert init == "scratch"
        if len(trained) == 3 and not calls["crashed"]:
            calls["crashed"] = True
            raise KeyboardInterrupt
        trained.append(label)
        model = scorer.build(cand, quantize=False)
        q = 40.0 + len(trained)
        tasks = {"tagging": {"map": q / 100}, "saliency": {"max_fbeta": q / 100, "mae": 0.1}}
        return SimpleNamespace(model=model, val_trained=Quality.from_tasks(tasks), seconds=1.0)

    calls = {"crashed": False}
    monkeypatch.setattr(search.finalize, "train_candidate", fake_train)
    data, cache = tiny_search_config.data, tiny_search_config.cache_dir
    out = tmp_path / "cal.json"
    out.write_text("{}")  # an unreadable earlier file is replaced, not trusted
    with pytest.raises(KeyboardInterrupt):
        calibrate_quality(data, steps=5, samples=2, cache_dir=cache, progress=False, out=out)
    assert trained == list(SHAPES[:3]) and [s.name for s in QualityCalibration.load(out).shapes] == trained
    trained.clear()
    cal = calibrate_quality(data, steps=5, samples=2, cache_dir=cache, progress=False, out=out)
    assert trained == [*SHAPES[3:], "space-00", "space-01"]  # the first three kept from the file
    assert [s.name for s in cal.shapes] == [*SHAPES, "space-00", "space-01"]
    assert QualityCalibration.load(out) == cal
    assert all(s.candidate is not None for s in cal.shapes)
    assert cal.shapes[0].tasks == pytest.approx({"tagging": 41.0, "saliency": 41.0})  # primary metrics only
    trained.clear()
    calibrate_quality(data, steps=6, samples=0, cache_dir=cache, progress=False, out=out)
    assert trained == list(SHAPES)  # other steps: nothing kept
    import dataclasses

    old = QualityCalibration.load(out)
    dataclasses.replace(old, shapes=tuple(dataclasses.replace(s, tasks=None) for s in old.shapes)).save(out)
    trained.clear()
    calibrate_quality(data, steps=6, samples=0, cache_dir=cache, progress=False, out=out)
    assert trained == list(SHAPES)  # rows written before per-task metrics were recorded: retrained
    with pytest.raises(ConfigError, match="is a directory"):  # before any training
        calibrate_quality(data, steps=6, samples=0, cache_dir=cache, progress=False, out=tmp_path)


def test_a_candidate_scored_twice_is_evaluated_once_and_predicted_by_the_model_set_since(monkeypatch):
    """The run's quality model scores the calibration shapes before the baselines, six of which are the same
    fp16 candidates: the second score reuses the first's evaluation and still gets the model's prediction."""
    import compress.evaluate
    from compress.model import Supernet, default_space
    from search.baselines import baseline_candidates
    from search.scorer import Scorer
    from search.space import load_space

    space = load_space(None, num_classes=12)
    scorer = Scorer(Supernet(default_space(num_classes=12)), data="builtin", devices=["a11"], eval_images=16)
    cand = baseline_candidates(space)["mnv3-small-035-r96"]
    calls = []
    evaluate = compress.evaluate.evaluate
    monkeypatch.setattr(compress.evaluate, "evaluate", lambda *a, **k: calls.append(1) or evaluate(*a, **k))
    first = scorer.score(cand)
    assert len(calls) == 1 and first.predicted is None and "evaluate" in first.seconds

    class Model:
        def predict(self, flops, fp16, inherited, tasks):
            return flops * 1e-6 + fp16

    scorer.quality_model = Model()
    again = scorer.score(cand)
    assert len(calls) == 1, "the second score evaluated the model again"
    assert again.seconds == {"cached": 0.0} and again.quality == first.quality
    assert again.predicted == pytest.approx(again.flops * 1e-6 + first.quality.aggregate)
    assert again.costs["a11"].latency_ms == first.costs["a11"].latency_ms
    assert len(scorer.score(cand, full_val=True).quality.tasks) == 3 and len(calls) == 2  # another split

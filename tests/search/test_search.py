"""compress search end to end on a tiny real run: outputs, resume, dead workers, infeasible budgets, errors."""

import dataclasses
import json
import socket
import subprocess

import pandas as pd
import pytest

from compress.cli import main
from compress.errors import ConfigError, RunError
from search import load_space, run_search
from search.redaction import redact
from search.storage import create_study, fail_dead_trials
from search.study import make_sampler


@pytest.fixture(scope="module")
def setup(tiny_search_config):
    return tiny_search_config


@pytest.fixture(scope="module")
def finished(tiny_run):
    return tiny_run


def test_run_directory(finished, setup):
    run = setup.run_dir
    for name in (
        "run.json",
        "study.journal",
        "supernet.safetensors",
        "trials.csv",
        "front.csv",
        "hypervolume.csv",
        "baselines.csv",
        "chosen/model.safetensors",
        "chosen/card.json",
        "chosen/layers.csv",
        "chosen/model.onnx",
        "chosen/model.mlpackage",
    ):
        assert (run / name).exists(), name
    assert not (run / "study.db").exists()  # a new run keeps its study in Optuna's journal file
    import onnx

    # without pretraining the artifacts are plain: no image embedding output, no prompt embeddings
    assert "image_embedding" not in {o.name for o in onnx.load(str(run / "chosen/model.onnx")).graph.output}
    assert not (run / "chosen/text_embeddings.safetensors").exists()
    meta = json.loads((run / "run.json").read_text())
    assert meta["format"] == 1 and meta["finished"] and meta["config"]["budget_ms"] == 10.0
    trials = pd.read_csv(run / "trials.csv")
    assert len(trials) == 3 and trials["trial"].is_unique
    front = pd.read_csv(run / "front.csv")
    assert len(front) >= 1 and front["feasible"].all()
    assert set(front["trial"]) <= set(trials["trial"])
    card = json.loads((run / "chosen/card.json").read_text())
    assert set(card["devices"]) == set(setup.devices)
    assert all(d["latency_ms"] <= setup.budget_ms for d in card["devices"].values())
    assert card["confidence"] == setup.confidence == 0.9
    for d, fig in card["devices"].items():  # the budget holds on each device's bound at that confidence
        assert (
            fig["latency_ms_p10"]
            < fig["latency_ms"]
            < fig["latency_ms_p90"]
            <= fig["latency_ms_bound"] + 1e-9
        ), d
        assert fig["latency_ms_bound"] <= setup.budget_ms and fig["within_budget"], d
        assert 0.9 <= fig["budget_confidence"] <= 0.95, d
        assert f"latency_ms_p90.{d}" in front and f"latency_ms_bound.{d}" in front
    assert card["trial"] in set(front["trial"])
    assert card["quality"]["aggregate"] == pytest.approx(card["quality"]["aggregate"])  # a number
    assert {"backbone", "tagging", "detection", "saliency"} <= set(card["heads"])
    # quality on the test split only; the chosen model and the baseline trained the same way
    assert card["quality_split"].startswith("test (8 images: instances_test.json)")
    assert card["training"]["steps"] == setup.finetune_steps and "AdamW" in card["training"]["how"]
    if card["baseline"] is not None:
        assert card["baseline"]["training"]["steps"] == card["training"]["steps"]
        delta = card["quality"]["aggregate"] - card["baseline"]["quality"]
        assert card["beats_baseline"] == (delta > 0) and card["delta"] == pytest.approx(delta)
        assert ("did NOT win" in card["verdict"]) == (delta <= 0)
    assert not {k for k in card["errors"] if not k.endswith(".trace")}, card["errors"]


def test_chosen_is_best_of_the_leaders_on_the_whole_val_split(finished):
    trials = finished.trials
    leaders = finished.card["selection"]["leaders"]
    top = trials[trials["feasible"]].sort_values("quality", ascending=False).head(len(leaders))
    assert sorted(r["trial"] for r in leaders) == sorted(top["trial"])
    assert finished.chosen["quality_val_full"] == pytest.approx(max(r["quality_val_full"] for r in leaders))
    assert finished.card["trial"] == finished.chosen["trial"] and finished.chosen["feasible"]


def test_rerun_continues_the_study(finished, setup):
    before = pd.read_csv(setup.run_dir / "trials.csv")
    more = dataclasses.replace(setup, trials=5, finalize=False)
    result = run_search(more, progress=False)
    after = result.trials
    assert len(after) == 5 and after["trial"].is_unique
    assert set(before["trial"]) <= set(after["trial"])
    # values of finished trials are kept, not recomputed
    merged = before.merge(after, on="trial", suffixes=("", "_after"))
    assert (merged["quality"] == merged["quality_after"]).all()


def test_other_settings_are_refused(finished, setup):
    before = (setup.run_dir / "run.json").read_bytes()
    with pytest.raises(ConfigError, match="created with other settings.*budget_ms"):
        run_search(dataclasses.replace(setup, budget_ms=5.0, finalize=False), progress=False)
    assert (setup.run_dir / "run.json").read_bytes() == before  # the refused rerun rewrote nothing


def test_dead_worker_trial_is_failed_with_reason(finished, setup):
    assert setup.storage_url.endswith("study.journal")  # the journal, which has no heartbeat
    space = load_space(setup.space_file, num_classes=12)
    study = create_study(
        storage=setup.storage_url,
        study_name=setup.name,
        objectives=setup.objectives,
        sampler=make_sampler("random", seed=0),
        config=setup.study_config(space, _identity(setup)),
    )
    dead = subprocess.Popen(["true"])
    dead.wait()
    trial = study.ask()
    trial.set_user_attr("host", socket.gethostname())
    trial.set_user_attr("pid", dead.pid)
    assert fail_dead_trials(study) == [trial.number]
    frozen = study.trials[trial.number]
    assert frozen.state.name == "FAIL" and "died" in frozen.user_attrs["fail_reason"]


def _identity(cfg):
    """The supernet, data and quality-calibration hashes the run's study was created with."""
    from search.storage import load_study

    saved = load_study(cfg.storage_url, cfg.name).user_attrs["config"]
    return {
        k: saved[k] for k in ("supernet_sha256", "data_sha256", "quality_calibration_sha256") if k in saved
    }


def test_retrained_supernet_or_changed_data_is_another_study(finished, setup):
    space = load_space(setup.space_file, num_classes=12)
    identity = _identity(setup)
    for key in identity:
        changed = {**identity, key: "0" * 16}
        with pytest.raises(ConfigError, match=f"created with other settings \\({key}\\)"):
            create_study(
                storage=setup.storage_url,
                study_name=setup.name,
                objectives=setup.objectives,
                sampler=make_sampler("random", seed=0),
                config=setup.study_config(space, changed),
            )


def test_infeasible_budget_keeps_the_study(setup, tmp_path):
    cfg = dataclasses.replace(setup, budget_ms=0.001, out=tmp_path / "tight", trials=2)
    (tmp_path / "tight").mkdir()
    (tmp_path / "tight" / "supernet.safetensors").write_bytes(
        (setup.run_dir / "supernet.safetensors").read_bytes()
    )
    with pytest.raises(RunError, match=r"no candidate meets the 0.001 ms budget.*closest: trial"):
        run_search(cfg, progress=False)
    assert (tmp_path / "tight" / "study.journal").is_file() and (tmp_path / "tight" / "trials.csv").is_file()


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("colour: [1]", "unknown key"),
        ("resolutions: [100]", "outside the supernet space"),
        ("quant: [pal3]", "unknown quantization scheme 'pal3'"),
        ("prune: [0.95]", "prune choices"),
        ("depths: 3", "must be a non-empty list"),
        ("branches: {segmentation: [1]}", "unknown task"),
    ],
)
def test_space_file_errors(tmp_path, text, match):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_space(path)


def test_space_file_formats(tmp_path):
    toml = tmp_path / "space.toml"
    toml.write_text('resolutions = [128, 160]\nquant = ["fp16", "int8"]\n')
    space = load_space(toml)
    assert space.arch.resolutions == (128, 160) and space.quant == ("fp16", "int8")
    with pytest.raises(ConfigError, match="does not exist"):
        load_space(tmp_path / "nope.yaml")
    bad = tmp_path / "space.yaml"
    bad.write_text("resolutions: [128\n")
    with pytest.raises(ConfigError, match="does not parse"):
        load_space(bad)


def test_redact():
    assert redact("postgresql://user:secret@db:5432/optuna") == "postgresql://user:***@db:5432/optuna"
    assert redact("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--budget", "10 parsecs"], "unknown unit 'parsecs'"),
        (["--budget", "-3ms"], "must be positive"),
        (["--devices", "a11,a99"], "unknown device 'a99'"),
        (["--sampler", "cmaes"], "unknown sampler"),
        (["--objectives", "latency,quality"], "objectives must start"),
        (["--memory", "lots"], "cannot read size"),
    ],
)
def test_cli_bad_input(args, match, capsys, tmp_path):
    code = main(["search", *args, "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and match in err and "Traceback" not in err and err.count("\n") == 1


def test_seed_population_spans_the_size_range():
    """A new study starts from candidates at stratified size levels: from near-smallest to near-largest."""
    import optuna

    from compress.model import MultiTaskNet, count_parameters
    from search import SearchSpace
    from search.study import seed_population

    space = SearchSpace.default(12)
    study = optuna.create_study(directions=["maximize", "minimize"])
    assert seed_population(study, space, 16, seed=0) == 16
    assert seed_population(study, space, 16, seed=0) == 0  # never twice into one study
    cands = [space.candidate(t.system_attrs["fixed_params"]) for t in study.trials]
    sizes = sorted(count_parameters(MultiTaskNet(c.spec)) for c in cands)
    smallest, largest = (
        count_parameters(MultiTaskNet(s)) for s in (space.arch.smallest(), space.arch.largest())
    )
    assert sizes[0] < smallest + 0.1 * (largest - smallest)
    assert sizes[-1] > smallest + 0.6 * (largest - smallest)
    assert len({c.spec.resolution for c in cands}) == len(space.arch.resolutions)


def test_seed_population_puts_a_quarter_just_under_the_budget():
    """Given a cost, a quarter of the first population lies in 80-100% of the budget; the cheapest member and
    those over the budget stay as the size levels drew them, and no candidate is enqueued twice."""
    import optuna

    from compress.model import MultiTaskNet, count_parameters
    from search import SearchSpace
    from search.study import Limits, seed_population

    space = SearchSpace.default(12)
    limits = Limits(budget_ms=1.0, devices=("a11",))

    def cost(candidate):  # latency in proportion to parameters, the budget at 40% of the range
        params = count_parameters(MultiTaskNet(candidate.spec)) * (1 - sum(candidate.prune) / 20)
        return {"latency_ms.a11": params / scale}

    sizes = [count_parameters(MultiTaskNet(s)) for s in (space.arch.smallest(), space.arch.largest())]
    scale = sizes[0] + 0.4 * (sizes[1] - sizes[0])

    def loads(**kw):
        study = optuna.create_study(directions=["maximize", "minimize"])
        assert seed_population(study, space, 16, seed=3, **kw) == 16
        cands = [space.candidate(t.system_attrs["fixed_params"]) for t in study.trials]
        assert len(set(cands)) == 16
        return sorted(cost(c)["latency_ms.a11"] for c in cands)

    plain, near = loads(), loads(cost=cost, limits=limits)
    assert sum(0.8 < x <= 1.0 for x in plain) < 4 <= sum(0.8 < x <= 1.0 for x in near)
    assert near[0] == plain[0] and [x for x in near if x > 1.0] == [x for x in plain if x > 1.0]
    # a cost no draw can meet leaves the size levels as they were
    assert loads(cost=lambda c: {"latency_ms.a11": 50.0}, limits=limits) == plain


def test_cost_row_is_the_scored_rows_cost():
    """The structural cost the first population is placed by equals the cost of the scored candidate."""
    from compress.model import Supernet, default_space
    from search.scorer import Scorer
    from search.space import load_space

    space = load_space(None, num_classes=12)
    scorer = Scorer(
        Supernet(default_space(num_classes=12)), data="builtin", devices=["a11", "m1"], eval_images=8,
        calib_images=8, confidence=0.9,
    )  # fmt: skip
    cand = next(c for c in (space.sample(_Pick(seed)) for seed in range(50)) if sum(c.prune) > 0.5)
    row, scored = scorer.cost_row(cand), scorer.score(cand).row()
    assert {"latency_ms_bound.a11", "latency_ms_p90.m1", "worst_latency_ms", "disk_mb"} <= row.keys()
    assert not any(k.startswith(("q.", "quality", "params", "arch")) for k in row)
    assert row == pytest.approx({k: scored[k] for k in row})


class _Pick:
    """A stand-in trial choosing at random (seeded)."""

    def __init__(self, seed):
        import random

        self.rng = random.Random(seed)

    def suggest_categorical(self, name, choices):
        return self.rng.choice(list(choices))


def test_a_failed_baseline_training_beside_the_chosen_model_trains_it_after(
    finished, setup, tmp_path, monkeypatch, two_threads
):
    """The final training trains the baseline in a forked child beside the chosen model; when that child fails,
    the chosen model's training is kept, the baseline trains in this process, and the card says why."""
    import shutil

    import search.finalize as fin
    from compress.finetune import at_once

    def failing(here, there, **kw):
        def broken():
            raise RuntimeError("the child ran out of memory")

        return at_once(here, broken, **kw)

    monkeypatch.setattr(fin, "at_once", failing)
    at_once_plan = {"mode": "at once", "at_once": True, "widen": False, "seconds_per_step": [0.1, 0.1]}
    monkeypatch.setattr(fin, "plan_steps", lambda models, seconds, **kw: (40, {**at_once_plan, "allowance_s": 0}))  # fmt: skip
    shutil.copytree(setup.run_dir, tmp_path / "run")
    result = run_search(dataclasses.replace(setup, out=tmp_path / "run"), progress=False)
    card = result.card
    assert "RuntimeError: the child ran out of memory" in card["training"]["plan"]["at_once_failed"]
    assert card["baseline"]["training"]["steps"] == card["training"]["steps"] == setup.finetune_steps
    assert card["quality"]["aggregate"] > 0 and card["baseline"]["quality"] > 0


def test_a_failed_timing_beside_the_chosen_model_plans_and_trains_both_in_turn(
    finished, setup, tmp_path, monkeypatch, two_threads
):
    """When timing the baseline in a forked child fails, the final training is planned and run one model after
    the other in this process, and the card says why."""
    import shutil

    import compress.finetune as ft

    real = ft.at_once

    def failing(here, there, **kw):
        def broken():
            raise RuntimeError("no second process today")

        return real(here, broken, **kw)

    monkeypatch.setattr(ft, "at_once", failing)  # plan_steps' timing; the training's at_once stays real
    shutil.copytree(setup.run_dir, tmp_path / "run")
    cfg = dataclasses.replace(setup, out=tmp_path / "run", finetune_steps=None, time_goal_s=1.0)
    card = run_search(cfg, progress=False).card
    plan = card["training"]["plan"]
    assert "RuntimeError: no second process today" in plan["at_once_failed"] and "at_once_threads" not in plan
    assert card["training"]["steps"] == card["baseline"]["training"]["steps"] == 40  # the spent goal's floor

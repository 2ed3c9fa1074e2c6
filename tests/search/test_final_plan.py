"""The final training's step plan: what the time goal leaves, and a plain note when it left nothing."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

import search.finalize as fin


def _cfg(**kw):
    return SimpleNamespace(**({"finetune_steps": None, "time_goal_s": 600.0} | kw))


def test_a_spent_time_goal_runs_the_floor_and_says_what_would_train_the_model(monkeypatch):
    monkeypatch.setattr(fin, "plan_steps", lambda models, seconds, **kw: (kw["lo"], {"seconds_per_step": [0.3, 0.2], "allowance_s": seconds}))  # fmt: skip
    started = time.monotonic() - 590.0  # 590 s of a 600 s goal already spent
    steps, plan = fin._plan(_cfg(), started, [])
    assert steps == fin.FLOOR_STEPS and plan["allowance_s"] == 0.0
    # 590 s elapsed + 20 s export reserve (none measured) + 600 steps x 0.5 s = 910 s -> 16 min
    assert f"--time-goal 16min (or --finetune-steps {fin.CEILING_STEPS})" in plan["note"]
    # the scoring after training, timed on the inherited models, is kept out of the allowance too
    _, plan = fin._plan(_cfg(), time.monotonic() - 400.0, [], after_s=30.0, export_s=42.0)
    assert 600 - 400 - 42 - 30 - 1 <= plan["allowance_s"] <= 600 - 400 - 42 - 30
    assert plan["reserve_s"] == {"scoring_after_training": 30.0, "export": 42.0}


def test_the_export_reserve_follows_the_measured_scoring():
    """The compression table evaluates the chosen model on test under each other scheme of the space: each is
    priced at the test split's share of the chosen model's timed inherited scoring (validation + test)."""
    cand = SimpleNamespace(quant="pal4")
    splits = SimpleNamespace(val=[0] * 400, test=[0] * 200)
    others = len(set(fin.scorer_schemes(_cfg(space_file=None))) - {"pal4"})
    assert others == 4  # fp16, int8, pal8, pal6 in the default space
    fast = fin.export_reserve_s(_cfg(space_file=None), cand, splits, 6.0)
    slow = fin.export_reserve_s(_cfg(space_file=None), cand, splits, 12.0)
    assert fast == pytest.approx(fin.EXPORT_FIXED_S + 4 * 2.0)
    assert slow - fin.EXPORT_FIXED_S == pytest.approx(2 * (fast - fin.EXPORT_FIXED_S))


def test_a_goal_with_time_left_plans_without_a_note(monkeypatch):
    monkeypatch.setattr(fin, "plan_steps", lambda models, seconds, **kw: (int(seconds / 0.5), {"seconds_per_step": [0.5], "allowance_s": seconds}))  # fmt: skip
    steps, plan = fin._plan(_cfg(), time.monotonic() - 100.0, [])
    assert steps > fin.FLOOR_STEPS and "note" not in plan
    assert fin._plan(_cfg(finetune_steps=7), None, []) == (7, {"rule": "--finetune-steps"})


@pytest.mark.parametrize("mode", ["one after the other", "at once", "at once, widened"])
def test_the_plan_decides_whether_the_pair_trains_at_once_and_widened(monkeypatch, two_threads, mode):
    """``plan_steps`` times the chosen model and its baseline both ways; the final training follows its
    choice: in turn here (``finetune_in_turn``, a step each, with the time goal's deadline), or at once (the
    chosen model taking every thread once the baseline is done). Both are scored as inherited before the
    plan, and that scoring's time is kept out of it."""
    import compress.finetune as ft
    from compress.metrics import Quality

    q = Quality.from_tasks({"tagging": {"map": 0.5}})
    order, calls, turns, planned = [], [], [], []

    def trained(scorer, cand, model, splits, *, steps, seed, label, progress, inherited):
        order.append((cand, steps))
        assert inherited == (q, q)
        return fin.Trained(cand, model, True, q, q, q, q, 1.0)

    def in_turn(jobs, *, steps, recipe, seed, deadline, lo, on_step):
        turns.append((len(jobs), steps, deadline, lo))
        return [m for m, _ in jobs], {
            "steps": steps - 2,
            "planned": steps,
            "cut": True,
            "seconds": [1.0, 2.0],
        }

    def kept(scorer, cand, model, tuned, splits, inherited, seconds):
        order.append((cand, seconds))
        return fin.Trained(cand, model, True, q, q, q, q, seconds)

    def at_once(here, there, *, threads, widen):
        calls.append((threads, widen))
        return here(), there()

    def plan_steps(models, seconds, **kw):
        planned.append(seconds)
        return 9, {**plan, "seconds_per_round": 0.1, "seconds_per_step": [0.1, 0.1], "allowance_s": seconds}

    plan = {"mode": mode, "at_once": mode != "one after the other", "widen": mode.endswith("widened")}
    monkeypatch.setattr(fin, "plan_steps", plan_steps)
    monkeypatch.setattr(fin, "train_and_score", trained)
    monkeypatch.setattr(fin, "_inherited", lambda scorer, cand, model, splits: (time.sleep(0.05), (q, q))[1])
    monkeypatch.setattr(fin, "_kept", kept)
    monkeypatch.setattr(ft, "finetune_in_turn", in_turn)
    monkeypatch.setattr(fin, "at_once", at_once)
    data = SimpleNamespace(train=None, val=[0] * 4, test=[0] * 4)
    console = SimpleNamespace(print=lambda *a, **k: order.append(a[0]))
    chosen_cand = SimpleNamespace(quant="pal4")
    started = time.monotonic()
    chosen, base, steps, got = fin._train_both(
        _cfg(seed=0, space_file=None), started, None, (chosen_cand, None, data),
        ("base", None, data), {"name": "b"},
        console, False,
    )  # fmt: skip
    assert got["mode"] == mode and (chosen.candidate, base.candidate) == (chosen_cand, "base")
    scoring, export = got["reserve_s"]["scoring_after_training"], got["reserve_s"]["export"]
    # the chosen model's scoring (0.05 s, half of it on test) prices each of the 4 other schemes' evaluations
    assert export == pytest.approx(fin.EXPORT_FIXED_S + 4 * 0.025, abs=0.05)
    assert scoring >= 0.1 and planned[0] <= 600 - scoring - export
    if mode == "one after the other":  # in turn, cut together: the steps trained are the card's
        [(n, nine, deadline, lo)] = turns
        assert (n, nine, lo, steps) == (2, 9, 9, 7) and got["steps_planned"] == 9 and got["cut_in_training"]
        assert deadline == pytest.approx(started + 600 - scoring - export, abs=0.06)
        assert (chosen_cand, 1.0) in order and ("base", 2.0) in order and not calls
        assert any(isinstance(x, str) and "trained 7 of the 9 planned steps" in x for x in order)
    else:
        assert steps == 9 and (chosen_cand, 9) in order and ("base", 9) in order and not turns
        assert calls == [(1, mode.endswith("widened"))]
    assert any(isinstance(x, str) and f"; {mode}" in x for x in order)  # the console says which way


def test_the_report_headline_carries_the_note():
    from reports._html import headline

    card = {
        "trial": 3,
        "quant": "pal4",
        "quality": {"aggregate": 55.0},
        "devices": {"a11": {"latency_ms": 7.0}},
        "training": {"plan": {"note": "the time goal was spent before the final training"}},
    }
    run = SimpleNamespace(card=card, slowest_device="a11", budget_ms=10.0)
    assert "Note: the time goal was spent before the final training" in headline(run)


def _study_with_trials(durations: list[float]):
    """A real in-memory Optuna study holding finished trials that each took ``durations[i]`` seconds."""
    import datetime as dt

    import optuna

    study = optuna.create_study(directions=["maximize", "minimize"])
    start = dt.datetime(2026, 1, 1)
    for s in durations:
        trial = optuna.trial.create_trial(values=[1.0, 1.0], state=optuna.trial.TrialState.COMPLETE)
        trial.datetime_start, trial.datetime_complete = start, start + dt.timedelta(seconds=s)
        study.add_trial(trial)
    return study


def test_the_time_goal_stops_trials_when_what_follows_them_would_overrun_it():
    """Before each trial: the baselines still to score and the leaders' re-scoring (at the median trial's
    time), the final training's share and the export must still fit in the goal."""
    study = _study_with_trials([2.0, 2.0, 9.0, 1.0, 2.0])  # median 2 s
    goal = 600.0
    # what must fit after this trial: (1 + 24 + 12) x 2 s + 120 s + 75 s = 269 s
    need = (1 + 24 + fin.RESCORE_TRIALS) * 2.0 + fin.FINAL_SHARE * goal + fin.FINAL_RESERVE_S
    cut = fin.TrialCutoff(goal_end=time.time() + need + 5, goal_s=goal, after=24, min_trials=4)
    assert cut(study) is None  # 5 s to spare
    cut = fin.TrialCutoff(goal_end=time.time() + need - 5, goal_s=goal, after=24, min_trials=4)
    why = cut(study)
    assert why is not None and "time goal (600 s)" in why and "2.0 s a trial" in why and "--time-goal" in why
    # never before the sampler's first population has finished, however late
    late = fin.TrialCutoff(goal_end=time.time() - 100, goal_s=goal, after=24, min_trials=6)
    assert late(study) is None
    # baselines already scored (baselines.csv kept from an earlier run) free their time for trials
    kept = fin.TrialCutoff(goal_end=time.time() + need - 5, goal_s=goal, after=0, min_trials=4)
    assert kept(study) is None


def test_a_search_whose_time_goal_is_spent_runs_its_first_population_and_says_why_it_stopped(
    tiny_search_config, tmp_path
):
    """Through the real run: a goal already spent when the trials start leaves the study at the sampler's
    first population, records why in run.json and still delivers a model; the supernet's training, given more
    steps than the spent goal allows, stops at its floor and run.json says so."""
    import dataclasses
    import json

    from compress.training import MIN_STEP_FRACTION
    from search import run_search

    train = dataclasses.replace(tiny_search_config.train, steps=24)
    cfg = dataclasses.replace(
        tiny_search_config, out=tmp_path / "run", trials=6, population_size=2, time_goal_s=1.0, train=train
    )
    result = run_search(cfg, progress=False)
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["trials"]["requested"] == 6 and run["trials"]["finished"] == 2 == len(result.trials)
    assert "the time goal (1 s)" in run["trials"]["stopped"]
    # the supernet's training too: the floor of its steps, said in run.json
    assert run["supernet"]["steps"] == int(24 * MIN_STEP_FRACTION)
    assert run["supernet"]["cut"].startswith("12 of the recipe's 24 steps")
    assert result.card is not None


def test_a_rerun_that_starts_with_its_time_goal_spent_says_why_no_trial_ran(tiny_search_config, tmp_path):
    """A rerun asking for more trials than the study holds, with no time left to start one, runs none; run.json
    says why, though no trial of the study was ever skipped (the first run finished all it asked for)."""
    import dataclasses
    import json

    from search import run_search

    cfg = dataclasses.replace(tiny_search_config, out=tmp_path / "run", trials=2, population_size=2)
    run_search(cfg, progress=False)
    first = json.loads((tmp_path / "run" / "run.json").read_text())["trials"]
    assert first == {"requested": 2, "finished": 2}
    result = run_search(dataclasses.replace(cfg, trials=5, time_goal_s=1.0), progress=False)
    again = json.loads((tmp_path / "run" / "run.json").read_text())["trials"]
    assert again["requested"] == 5 and again["finished"] == 2 == len(result.trials)
    assert again["stopped"].startswith("not run: the time goal (1 s)")

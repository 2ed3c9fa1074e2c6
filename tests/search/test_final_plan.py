"""The final training's step plan: what the time goal leaves, and a plain note when it left nothing."""

from __future__ import annotations

import time
from types import SimpleNamespace

import search.finalize as fin


def _cfg(**kw):
    return SimpleNamespace(**({"finetune_steps": None, "time_goal_s": 600.0} | kw))


def test_a_spent_time_goal_runs_the_floor_and_says_what_would_train_the_model(monkeypatch):
    monkeypatch.setattr(fin, "plan_steps", lambda models, seconds, **kw: (kw["lo"], {"seconds_per_step": [0.3, 0.2], "allowance_s": seconds}))  # fmt: skip
    started = time.monotonic() - 590.0  # 590 s of a 600 s goal already spent
    steps, plan = fin._plan(_cfg(), started, [])
    assert steps == fin.FLOOR_STEPS and plan["allowance_s"] == 0.0
    # 590 s elapsed + 75 s reserve + 600 steps x 0.5 s = 965 s -> 17 min
    assert f"--time-goal 17min (or --finetune-steps {fin.CEILING_STEPS})" in plan["note"]


def test_a_goal_with_time_left_plans_without_a_note(monkeypatch):
    monkeypatch.setattr(fin, "plan_steps", lambda models, seconds, **kw: (int(seconds / 0.5), {"seconds_per_step": [0.5], "allowance_s": seconds}))  # fmt: skip
    steps, plan = fin._plan(_cfg(), time.monotonic() - 100.0, [])
    assert steps > fin.FLOOR_STEPS and "note" not in plan
    assert fin._plan(_cfg(finetune_steps=7), None, []) == (7, {"rule": "--finetune-steps"})


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

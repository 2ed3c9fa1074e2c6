"""compress.finetune: the one recipe that trains a static model (chosen, baseline or from scratch)."""

import time

import pytest
import torch

from compress.data import SceneConfig, load_data
from compress.errors import ConfigError
from compress.finetune import (
    AtOnceError,
    FinetuneRecipe,
    at_once,
    finetune,
    finetune_in_turn,
    pair_threads,
    plan_steps,
    reinitialize,
)
from compress.model import MultiTaskNet, multitask_loss
from tests.compress.tinynets import tiny_spec as _tiny


def tiny_spec(resolution: int):
    import dataclasses

    return dataclasses.replace(_tiny(resolution), num_classes=12)  # the scenes' 12 categories


@pytest.fixture(scope="module")
def train(tmp_path_factory):
    scenes = SceneConfig(num_train=16, num_val=4, num_test=4, image_size=64)
    cache = tmp_path_factory.mktemp("cache")
    return load_data("builtin", resolution=64, cache_dir=cache, progress=False, scenes=scenes)[0]


def _loss(model, train) -> float:
    model.eval()
    with torch.no_grad():
        batch = train.batch(torch.arange(len(train)))
        return float(multitask_loss(model(batch["images"]), batch)["total"])


def test_finetune_lowers_the_training_loss_and_is_seeded(train):
    torch.manual_seed(0)
    a = MultiTaskNet(tiny_spec(64))
    b = MultiTaskNet(tiny_spec(64))
    b.load_state_dict(a.state_dict())
    before = _loss(a, train)
    recipe = FinetuneRecipe(lr=3e-3, batch_size=8)
    steps = []
    finetune(a, train, steps=30, recipe=recipe, seed=1, on_step=steps.append)
    finetune(b, train, steps=30, recipe=recipe, seed=1)
    assert steps == list(range(1, 31)) and not a.training
    assert _loss(a, train) < 0.9 * before
    assert all(
        torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


def _same(a, b) -> bool:
    return all(
        torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


def _pair(n: int):
    torch.manual_seed(0)
    first = MultiTaskNet(tiny_spec(64))
    copies = [MultiTaskNet(tiny_spec(64)) for _ in range(n)]
    for c in copies:
        c.load_state_dict(first.state_dict())
    return first, copies


def test_training_in_turn_gives_each_model_what_finetune_gives_it_alone(train):
    """The final training trains the chosen model and its baseline a step each in turn; with no deadline a
    model comes out exactly as ``finetune`` alone makes it (same batches, same schedule)."""
    recipe = FinetuneRecipe(lr=3e-3, batch_size=8)
    alone, (one, other) = _pair(2)
    finetune(alone, train, steps=12, recipe=recipe, seed=4)
    rounds = []
    models, info = finetune_in_turn(
        [(one, train)], steps=12, recipe=recipe, seed=4, on_step=lambda d, t: rounds.append((d, t))
    )
    assert models == [one] and _same(alone, one) and not one.training
    assert info["steps"] == 12 == info["planned"] and not info["cut"] and rounds[-1] == (12, 12)
    [a, b], _ = finetune_in_turn([(other, train), (_pair(1)[1][0], train)], steps=12, recipe=recipe, seed=4)
    assert _same(a, b) and _same(a, alone)  # each model of a pair trains as it would alone


def test_a_deadline_stops_every_model_at_the_same_lowered_step_count(train):
    import compress.finetune as ft

    recipe = FinetuneRecipe(lr=3e-3, batch_size=4)
    _, (a, b) = _pair(2)
    rounds = []
    past = time.monotonic()  # already passed: the count falls to the first check, or the floor
    _, info = finetune_in_turn([(a, train), (b, train)], steps=60, recipe=recipe, seed=1, deadline=past,
                               lo=3, on_step=lambda d, t: rounds.append((d, t)))  # fmt: skip
    assert info["steps"] == ft.PACE_AFTER and info["planned"] == 60 and info["cut"]
    assert rounds[-1] == (ft.PACE_AFTER, ft.PACE_AFTER) and all(
        t == 60 for _, t in rounds[: ft.PACE_AFTER - 1]
    )
    assert _same(a, b) and len(info["seconds"]) == 2 and all(s > 0 for s in info["seconds"])
    _, (c,) = _pair(1)
    _, floor = finetune_in_turn([(c, train)], steps=60, recipe=recipe, seed=1, deadline=past, lo=20)
    assert floor["steps"] == 20  # never below the floor, however late
    _, (d,) = _pair(1)
    _, far = finetune_in_turn([(d, train)], steps=15, recipe=recipe, seed=1, deadline=time.monotonic() + 1e6)
    assert far["steps"] == 15 and not far["cut"]  # never raised past the plan


def test_the_step_count_follows_the_pace_down_and_back_up_never_past_the_plan(train, monkeypatch):
    """A slow stretch lowers the count; when the pace recovers the count rises back, never above the plan."""
    import types

    import compress.finetune as ft

    clock = {"t": 0.0, "round": 0}

    def monotonic() -> float:  # called once before the first round, then once after each round
        clock["t"] += 0.0 if clock["round"] == 0 else (2.0 if clock["round"] <= 25 else 0.2)
        clock["round"] += 1
        return clock["t"]

    monkeypatch.setattr(
        ft, "time", types.SimpleNamespace(monotonic=monotonic, perf_counter=time.perf_counter)
    )
    _, (a,) = _pair(1)
    totals = []
    _, info = finetune_in_turn([(a, train)], steps=80, recipe=FinetuneRecipe(lr=3e-3, batch_size=4), seed=1,
                               deadline=70.0, lo=5, on_step=lambda d, t: totals.append(t))  # fmt: skip
    assert min(totals) < 40  # 25 rounds of 2 s: at that pace the 70 s fit about 35
    assert info["steps"] == totals[-1] > min(totals) and max(totals) == 80  # back up once 0.2 s a round


def test_reinitialize_keeps_the_architecture_and_forgets_the_weights():
    torch.manual_seed(0)
    model = MultiTaskNet(tiny_spec(64))
    for p in model.parameters():
        torch.nn.init.constant_(p, 0.5)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    reinitialize(model, seed=3)
    assert {k: v.shape for k, v in model.state_dict().items()} == shapes
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(not torch.all(c.weight == 0.5) for c in convs)
    from compress.model.blocks import InvertedResidual

    residual = [b for b in model.modules() if isinstance(b, InvertedResidual) and b.use_residual]
    assert all(torch.all(b.project.bn.weight == 0) for b in residual)


def test_plan_steps_fits_the_allowance_within_bounds(train):
    model = MultiTaskNet(tiny_spec(64))
    recipe = FinetuneRecipe(batch_size=4)
    steps, info = plan_steps([(model, train), (model, train)], 1e6, recipe=recipe, hi=77)
    assert steps == 77 and len(info["seconds_per_step"]) == 2
    assert info["timing_s"] > 0  # the timing spends the allowance it plans
    assert plan_steps([(model, train)], 0.0, recipe=recipe, lo=5)[0] == 5
    per = sum(info["seconds_per_step"])
    mid, _ = plan_steps([(model, train), (model, train)], 50 * per, recipe=recipe, lo=1, hi=10_000)
    assert 10 <= mid <= 250  # the timing is noisy on a shared machine; the order of magnitude must hold


def _trained_sum(train) -> float:
    torch.manual_seed(0)
    model = MultiTaskNet(tiny_spec(64))
    finetune(model, train, steps=6, recipe=FinetuneRecipe(lr=3e-3, batch_size=8), seed=2)
    return float(sum(p.detach().double().sum() for p in model.parameters()))


def test_two_trainings_at_once_give_what_each_gives_alone_and_restore_the_threads(train, two_threads):
    """The final training trains the chosen model here and its baseline in a forked child at the same time;
    both must come out as they would one after the other on the same thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        alone = _trained_sum(train)
    finally:
        torch.set_num_threads(before)
    here, there = at_once(lambda: (_trained_sum(train), torch.get_num_threads()),
                          lambda: [_trained_sum(train), torch.get_num_threads()], threads=1)  # fmt: skip
    assert here == (alone, 1) and there == [alone, 1]  # JSON keeps a float exactly
    assert torch.get_num_threads() == before


def test_a_failing_or_dying_half_is_an_error_that_keeps_the_other_half(two_threads):
    import os

    def fails() -> None:
        raise ValueError("no baseline today")

    with pytest.raises(AtOnceError, match="ValueError: no baseline today") as e:
        at_once(lambda: 41 + 1, fails, threads=1)
    assert e.value.here == 42
    with pytest.raises(AtOnceError, match="exit code 3") as e:
        at_once(lambda: "kept", lambda: os._exit(3), threads=1)
    assert e.value.here == "kept"


def test_plan_steps_times_two_models_at_once_as_one_round(train, two_threads):
    """Trained at once, a round of both costs the faster one's step plus the slower one's remaining share on
    every thread (or its step at once, where every thread is no faster); one after the other, the sum."""
    model = MultiTaskNet(tiny_spec(64))
    recipe = FinetuneRecipe(batch_size=4)
    _, seq = plan_steps([(model, train), (model, train)], 10.0, recipe=recipe)
    assert seq["seconds_per_round"] == pytest.approx(sum(seq["seconds_per_step"]), abs=1e-3)
    assert "at_once_threads" not in seq
    assert pair_threads() == two_threads
    _, pair = plan_steps([(model, train), (model, train)], 10.0, recipe=recipe, threads=pair_threads())
    assert pair["at_once_threads"] == 1
    rounds = pair["seconds_per_round_by_mode"]
    a0, a1 = pair["seconds_per_step_alone"]
    assert rounds["one after the other"] == pytest.approx(a0 + a1, abs=1e-3)
    assert pair["seconds_per_round"] == min(rounds.values()) == rounds[pair["mode"]]
    assert pair["at_once"] == (pair["mode"] != "one after the other")
    assert pair["widen"] == (pair["mode"] == "at once, widened")
    if pair["at_once"]:
        here, there = pair["seconds_per_step"]
        assert rounds["at once"] == pytest.approx(max(here, there), abs=1e-3)
        # only where the first model (trained here) is the slower may it widen; the plan compares unrounded
        # timings, which two equal rounded ones (here == there) do not tell apart
        if "at once, widened" in rounds:
            assert here >= there
            assert rounds["at once, widened"] == pytest.approx(
                there + (1 - there / here) * min(a0, here), abs=1e-3
            )
        else:
            assert here <= there
    else:
        assert pair["seconds_per_step"] == [a0, a1]


def _threads_after_training(train, wait: float) -> int:
    """Sleeps ``wait`` s, trains 3 steps, and returns this process's thread count in the middle of training
    (after the steps' hooks ran)."""
    time.sleep(wait)
    seen = []
    finetune(MultiTaskNet(tiny_spec(64)), train, steps=3, recipe=FinetuneRecipe(batch_size=4),
             on_step=lambda step: seen.append(torch.get_num_threads()))  # fmt: skip
    return seen[-1]


@pytest.mark.parametrize("widen", [False, True])
def test_the_training_here_takes_every_thread_once_the_child_is_done_when_widened(train, two_threads, widen):
    """With ``widen``, this process's training takes every thread once the child has returned (from its next
    step on); without, it keeps its half, and the child always keeps its half (a forked child that raises its
    thread count can hang in its inherited OpenMP pool). The thread count is restored here either way."""
    before = torch.get_num_threads()
    here, there = at_once(lambda: _threads_after_training(train, 0.5), lambda: 0, threads=1, widen=widen)
    assert here == (before if widen else 1)
    here, there = at_once(lambda: 0, lambda: _threads_after_training(train, 0.5), threads=1, widen=widen)
    assert there == 1
    assert torch.get_num_threads() == before


def test_recipe_rejects_bad_values():
    with pytest.raises(ConfigError, match="lr must lie in"):
        FinetuneRecipe(lr=0)
    with pytest.raises(ConfigError, match="batch size must be >= 2"):
        FinetuneRecipe(batch_size=1)


def test_plan_steps_keeps_a_margin_only_where_the_pair_trains_at_once(monkeypatch):
    """At once nothing cuts the count in training, so the plan divides it by ``at_once_margin``; in turn the
    pace measured in training does (``finetune_in_turn``), and the plan's count stands as timed."""
    import compress.finetune as ft

    monkeypatch.setattr(ft, "_seconds_per_step", lambda *a, **k: 1.0)  # every step alone: 1 s
    for at_once_step, mode, steps in (
        (0.6, "at once", int(100 / (0.6 * 1.2))),
        (2.5, "one after the other", 50),
    ):
        monkeypatch.setattr(ft, "at_once", lambda here, there, *, threads, s=at_once_step: (s, s))
        got, info = plan_steps(
            [(None, None), (None, None)], 100.0, lo=1, hi=10_000, threads=1, at_once_margin=1.2
        )
        assert info["mode"] == mode and got in (steps, steps - 1)  # the timing spends a hair of the 100 s
        assert info.get("pace_margin") == (1.2 if mode == "at once" else None)

"""Training one static multi-task model: the chosen candidate, a baseline, or a network from scratch.

One recipe (``FinetuneRecipe``) serves every comparison the toolkit makes, so that "trained the same way" means
the same code and the same numbers: AdamW, linear warm-up then cosine decay, the multi-task loss, batches drawn
with a seeded generator from the training split at the model's own resolution. ``finetune`` starts from
whatever weights the model holds (inherited from the supernet, or fresh from ``reinitialize``);
``plan_steps`` turns a time allowance into a step count by timing a few steps of each model to be trained;
``finetune_in_turn`` trains several models a step each in turn, for the same steps, and lowers that count
while the pace it measures in training says a deadline would pass.

Two trainings of small models can run faster side by side, each on half the cores, than one after the other
on all of them, where PyTorch's intra-op threads gain little on their layer sizes — or slower, where one of
them gains much (``benchmarks/final_training_at_once.py`` on 2 cores, 100 steps of two default runs' chosen
model and baseline: x1.36-1.51 for one pair, x0.78-0.84 for another, whose chosen model runs x1.7 faster on 2
threads; x1.03-1.20 when it takes both threads once the baseline is done). ``pair_threads`` says whether
this process can train two at once (a forking platform, two threads or more), ``at_once`` runs two functions
that way (one here, one in a forked child that sends back JSON) and ``plan_steps`` times which way is fastest.
"""

from __future__ import annotations

import copy
import json
import math
import multiprocessing
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import torch
from torch import nn

from compress.errors import ConfigError

__all__ = [
    "AtOnceError",
    "FinetuneRecipe",
    "at_once",
    "finetune",
    "finetune_in_turn",
    "pair_threads",
    "plan_steps",
    "reinitialize",
]

T = TypeVar("T")
#: called after every training step of this process (``at_once``'s widening: a training takes the other's
#: threads once the other has finished)
_STEP_HOOKS: list[Callable[[], None]] = []


@dataclass(frozen=True)
class FinetuneRecipe:
    """How a static model is trained: optimiser settings and batch size (the step count is separate)."""

    lr: float = 2e-3
    batch_size: int = 32
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.05

    def __post_init__(self) -> None:
        if not 0 < self.lr < 1:
            raise ConfigError(f"fine-tuning lr must lie in (0, 1), but got {self.lr}")
        if self.batch_size < 2:
            raise ConfigError(f"fine-tuning batch size must be >= 2, but got {self.batch_size}")
        if not 0 <= self.warmup_fraction < 1:
            raise ConfigError(f"warmup_fraction must lie in [0, 1), but got {self.warmup_fraction}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self, steps: int) -> str:
        return (
            f"{steps} steps of AdamW (lr {self.lr:g}, weight decay {self.weight_decay:g}, "
            f"{self.warmup_fraction:.0%} linear warm-up then cosine), batch {self.batch_size}, multi-task loss"
        )


def _lr(step: int, steps: int, recipe: FinetuneRecipe, warm: int | None = None) -> float:
    """The learning rate of ``step`` of ``steps``: linear warm-up over ``warm`` steps (default: the recipe's
    fraction of ``steps``), then cosine decay to zero at ``steps``."""
    warm = int(round(recipe.warmup_fraction * steps)) if warm is None else warm
    if step < warm:
        return recipe.lr * (step + 1) / warm
    t = (step - warm) / max(1, steps - warm)
    return 0.5 * recipe.lr * (1 + math.cos(math.pi * t))


def finetune(
    model: nn.Module,
    train: Any,
    *,
    steps: int,
    recipe: FinetuneRecipe = FinetuneRecipe(),
    seed: int = 0,
    on_step: Any = None,
) -> nn.Module:
    """Train ``model`` in place for ``steps`` steps on ``train`` (a ``MultiTaskDataset`` at the model's
    resolution) and return it in eval mode. ``on_step(step)`` is called after every step (progress)."""
    if steps <= 0:
        return model.eval()
    with torch.random.fork_rng(devices=[]):  # dropout draws from the global generator: leak nothing
        trainer = _Stepper(model, train, recipe, seed)
        for step in range(steps):
            trainer.step(_lr(step, steps, recipe))
            if on_step is not None:
                on_step(step + 1)
            for hook in _STEP_HOOKS:
                hook()
        return trainer.done()


class _Stepper:
    """One model's training under ``recipe``: its optimiser, its seeded batch draws and its own stream of the
    global generator (dropout), a step at a time; models stepped in turn draw what each would draw alone.
    Call it under ``torch.random.fork_rng``: it seeds the global generator."""

    def __init__(self, model: nn.Module, train: Any, recipe: FinetuneRecipe, seed: int) -> None:
        self.model, self.train, self.recipe = model, train, recipe
        self.g = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        self.rng = torch.get_rng_state()
        model.to(memory_format=torch.channels_last)  # PyTorch's depthwise backward is much faster so on CPU
        self.opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
        model.train()
        self.seconds = 0.0  # spent in this model's steps

    def step(self, lr: float) -> None:
        from compress.model import multitask_loss

        t0 = time.perf_counter()
        torch.set_rng_state(self.rng)
        for group in self.opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(len(self.train), (self.recipe.batch_size,), generator=self.g)
        batch = self.train.batch(idx)
        loss = multitask_loss(self.model(batch["images"]), batch)["total"]
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.rng = torch.get_rng_state()
        self.seconds += time.perf_counter() - t0

    def done(self) -> nn.Module:
        return self.model.to(memory_format=torch.contiguous_format).eval()


#: ``finetune_in_turn`` with a deadline: the pace is the mean round over the last PACE_WINDOW rounds, and
#: the step count is first checked after PACE_AFTER rounds (the first ones pay for allocation)
PACE_AFTER, PACE_WINDOW = 8, 20


def finetune_in_turn(
    jobs: Sequence[tuple[nn.Module, Any]],
    *,
    steps: int,
    recipe: FinetuneRecipe = FinetuneRecipe(),
    seed: int = 0,
    deadline: float | None = None,
    lo: int = 1,
    on_step: Callable[[int, int], None] | None = None,
) -> tuple[list[nn.Module], dict[str, Any]]:
    """Train every ``(model, train split)`` of ``jobs`` in place, in turn a step each, for the same steps
    with the same schedule, and return them in eval mode with what happened. Each model draws the batches
    ``finetune`` would give it with ``seed`` and comes out as ``finetune`` alone makes it.

    ``deadline`` (a ``time.monotonic()`` value): the planned ``steps`` were timed on a few steps before the
    training, and this machine's speed drifts by up to ~20% within minutes. After every round (a step of each
    model) past the first ``PACE_AFTER``, the step count is set to what the recent pace fits before the
    deadline, never above the planned ``steps`` and never below ``lo`` (or the rounds done: a count reached
    ends the training); the cosine decay then ends at the current count (the warm-up stays as planned). The
    count may rise back after a slow stretch: a count that could only fall would follow the slowest window
    of the whole training (the 2625bc0 run's training ended 15-20 s before its deadline, by its files'
    times). Every model trains the same steps whatever the cut, so the pair stays comparable.
    ``on_step(done, total)`` after every round. Returns the models and ``{"steps", "planned", "cut",
    "seconds"}`` (``seconds``: each model's own time in its steps)."""
    if steps <= 0:
        return [m.eval() for m, _ in jobs], {
            "steps": 0,
            "planned": steps,
            "cut": False,
            "seconds": [0.0] * len(jobs),
        }
    warm = int(round(recipe.warmup_fraction * steps))
    total = steps
    with torch.random.fork_rng(devices=[]):
        trainers = [_Stepper(m, d, recipe, seed) for m, d in jobs]
        stamps = [time.monotonic()]
        done = 0
        while done < total:
            lr = _lr(done, total, recipe, warm)
            for trainer in trainers:
                trainer.step(lr)
                for hook in _STEP_HOOKS:
                    hook()
            done += 1
            stamps.append(time.monotonic())
            if deadline is not None and done >= PACE_AFTER and done < total:
                recent = stamps[-(PACE_WINDOW + 1) :]
                pace = max(1e-6, (recent[-1] - recent[0]) / (len(recent) - 1))
                fit = done + int(max(0.0, deadline - recent[-1]) / pace)
                total = min(steps, max(lo, done, fit))  # back up to the plan when the pace recovers
            if on_step is not None:
                on_step(done, total)
        models = [t.done() for t in trainers]
    info = {
        "steps": done,
        "planned": steps,
        "cut": done < steps,
        "seconds": [round(t.seconds, 2) for t in trainers],
    }
    return models, info


def reinitialize(model: nn.Module, *, seed: int = 0) -> nn.Module:
    """``model`` with every weight drawn afresh (same architecture, pruned widths included): "from scratch".

    Convolutions and linear layers get PyTorch's default initialisation, BatchNorms scale 1 / shift 0, and the
    last BatchNorm of every residual block scale 0 (the identity start the supernet uses too).
    """
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear | nn.BatchNorm2d):
            m.reset_parameters()
    from compress.model.blocks import InvertedResidual

    for block in model.modules():
        if isinstance(block, InvertedResidual) and block.use_residual:
            nn.init.zeros_(block.project.bn.weight)
    return model


def _seconds_per_step(model: nn.Module, train: Any, recipe: FinetuneRecipe, probe_steps: int) -> float:
    """Seconds one training step of ``model`` takes here (median of ``probe_steps`` after a warm-up)."""
    trial = copy.deepcopy(model)
    times: list[float] = []
    t0 = time.perf_counter()
    finetune(
        trial,
        train,
        steps=probe_steps + 1,
        recipe=recipe,
        on_step=lambda _: times.append(time.perf_counter()),
    )
    stamps = [t0, *times]
    per = sorted(b - a for a, b in zip(stamps[1:], stamps[2:], strict=False))
    return per[len(per) // 2] if per else stamps[-1] - t0


def plan_steps(
    models: Sequence[tuple[nn.Module, Any]],
    seconds: float,
    *,
    recipe: FinetuneRecipe = FinetuneRecipe(),
    lo: int = 40,
    hi: int = 600,
    probe_steps: int = 3,
    threads: int | None = None,
    at_once_margin: float = 1.0,
) -> tuple[int, dict[str, Any]]:
    """The step count that lets every ``(model, train split)`` in ``models`` train that many steps within
    ``seconds`` in total from this call (the timing spends some of them), clipped to ``[lo, hi]``; with the
    measured seconds per step of each.

    With ``threads`` (``pair_threads()``) and two models, each is timed as it could train: at once on
    ``threads`` threads each (``at_once``: the first model here, the second in the child), and alone on every
    thread. The round of both is planned the fastest of three ways (``info["mode"]``): one after the other
    (the sum of the alone steps), at once (the slower step at once), or at once widened, where the first
    model is the slower: the second one's step plus, for the share of its steps the first has left once the
    second is done, the first one's step alone (``at_once(widen=True)``). Which is fastest depends on the
    pair: a model that gains x1.7 from a second thread trains slower at once than in turn. ``at_once_margin``
    divides the step count when the pair trains at once, where nothing adapts the count in training: how much
    slower the steady pace may run than the short probes time it (``info["pace_margin"]``)."""
    pair = threads is not None and len(models) == 2
    t0 = time.perf_counter()
    info: dict[str, Any] = {"allowance_s": seconds}
    alone = [_seconds_per_step(m, d, recipe, probe_steps) for m, d in models]  # every thread of this process
    per = alone
    total = sum(alone)
    if pair:
        (m0, d0), (m1, d1) = models
        here, there = at_once(
            lambda: _seconds_per_step(m0, d0, recipe, probe_steps),
            lambda: _seconds_per_step(m1, d1, recipe, probe_steps),
            threads=threads or 1,
        )
        per = [here, float(there)]
        rounds = {"one after the other": total, "at once": max(per)}
        if here > there:  # only this process widens (``at_once``)
            rounds["at once, widened"] = there + (1 - there / here) * min(alone[0], here)
        mode = min(rounds, key=lambda k: rounds[k])
        total = rounds[mode]
        per = alone if mode == "one after the other" else per
        info.update(mode=mode, at_once=mode != "one after the other", widen=mode == "at once, widened",
                    at_once_threads=threads, seconds_per_step_alone=[round(x, 4) for x in alone],
                    seconds_per_round_by_mode={k: round(v, 4) for k, v in rounds.items()})  # fmt: skip
    timing = time.perf_counter() - t0  # the timing itself spends the allowance
    left = max(0.0, seconds - timing)
    margin = at_once_margin if info.get("at_once") else 1.0
    steps = int(left / (total * margin)) if total > 0 else hi
    if margin != 1.0:
        info["pace_margin"] = margin
    info.update(seconds_per_step=[round(p, 4) for p in per], seconds_per_round=round(total, 4),
                timing_s=round(timing, 3))  # fmt: skip
    return max(lo, min(hi, steps)), info


class AtOnceError(RuntimeError):
    """The forked half of ``at_once`` failed or died; the message carries its traceback or exit code, and
    ``here`` what this process's half returned (it finished first)."""

    def __init__(self, message: str, here: Any) -> None:
        super().__init__(message)
        self.here = here


def pair_threads() -> int | None:
    """Threads each of two trainings gets when they run at once (half of this process's), or None when they
    should run one after the other: where the platform does not fork safely beside PyTorch (only Linux is
    used), or this process has a single thread."""
    n = torch.get_num_threads()
    if n < 2 or not sys.platform.startswith("linux"):
        return None
    return n // 2


def at_once(
    here: Callable[[], T], there: Callable[[], Any], *, threads: int, widen: bool = False
) -> tuple[T, Any]:
    """``here()`` in this process and ``there()`` in a forked child at the same time, each on ``threads``
    PyTorch threads; returns ``(here(), there())``. ``there`` must return JSON-ready data: it comes back as
    JSON through a pipe (nothing is unpickled). A failure in the child raises ``AtOnceError`` here, after
    ``here`` finished (its result rides on the error); this process's thread count is restored either way.

    ``widen``: once the child has returned, ``here`` takes every thread this process had, from its next
    training step on (``finetune``), so no core idles while the slower model finishes alone. Only this
    process widens: a forked child that raises its thread count hangs in the OpenMP pool it inherited (seen
    with GNU OpenMP), so the slower training belongs here."""
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    before = torch.get_num_threads()
    there_done = ctx.Event()
    child = ctx.Process(target=_there, args=(there, threads, send, there_done), daemon=True)
    child.start()
    send.close()  # the child holds the only writer: its exit ends the pipe
    hooks = [_widen_when(there_done, before)] if widen else []
    _STEP_HOOKS.extend(hooks)  # after the fork: the child has none
    try:
        torch.set_num_threads(threads)
        result = here()
    finally:
        for hook in hooks:
            _STEP_HOOKS.remove(hook)
        torch.set_num_threads(before)
        try:
            message = json.loads(receive.recv_bytes().decode())
        except EOFError:
            message = None
        child.join()
        receive.close()
    if message is None:
        raise AtOnceError(
            f"the forked process ended with exit code {child.exitcode} before it answered", result
        )
    if "error" in message:
        raise AtOnceError(message["error"], result)
    return result, message["result"]


def _widen_when(other_done: Any, threads: int) -> Callable[[], None]:
    """A step hook that sets ``threads`` PyTorch threads once ``other_done`` is set (once)."""
    state = {"done": False}

    def hook() -> None:
        if not state["done"] and other_done.is_set():
            state["done"] = True
            torch.set_num_threads(threads)

    return hook


def _there(fn: Callable[[], Any], threads: int, send: Any, done: Any) -> None:
    torch.set_num_threads(threads)
    try:
        message = {"result": fn()}
    except BaseException:
        message = {"error": traceback.format_exc(limit=8)}
    done.set()
    send.send_bytes(json.dumps(message).encode())
    send.close()

"""Predicted trained quality: what a candidate scores after training, from its size and its inherited score.

Why: at the default supernet budget the inherited score (supernet weights, BN recalibrated) ranks candidates
by little beyond noise once their size is known. ``benchmarks/ranking_fidelity.py`` measured it: against
training each candidate from scratch, the inherited score ranked 12 searched trials at Kendall tau 0.30,
while a line through log(compute) fitted on six hand-scaled shapes ranked the same trials far better, and
beside size the inherited score got weight 0. Training converts compute into quality; the supernet's shared
weights do not show how much.

So the search can score with a **quality model calibrated on a few standalone runs**: the hand-scaled
MobileNetV3 shapes of :data:`SHAPES` and :data:`SAMPLES` architectures drawn at random from the default space
(:func:`space_samples`: pruned, with other depths, kernels, expansions and branch points) are trained from
scratch with the final-training recipe (``compress calibrate-quality``; their *validation* quality, so no
decision reads the test split), and::

    predicted = intercept + slope * ln(FLOPs) + weight * inherited_fp16 - (inherited_fp16 - inherited)

is fitted by non-negative least squares (``slope >= 0``: more compute never predicts less; ``weight >= 0``:
a better inherited score never predicts less) on them, their inherited scores coming from the run's own
supernet. The last term is the scheme's loss (palettization, int8), measured on the supernet for each
candidate, since the fp16 calibration runs cannot show it; pruning acts through FLOPs and the inherited score.
The standalone results do not depend on the supernet (fresh weights), so one calibration serves every run on
the same data and recipe; the model itself is refitted per run. Its leave-one-shape-out error is recorded
beside it.

Why the drawn architectures: the six shapes share one head layout and MobileNetV3's depths, so on them alone the
inherited score got weight 0 and the model ranked by FLOPs only — blind to what a head branching deeper, or a
deep pruned backbone, does to a short training. With the drawn ones beside them the fit gives the inherited
score weight ~0.8 (leave-one-out |error| 2.5 points over 16 runs); a depth term, tried in an analysis outside
the repo, did not lower that error and was left out.

The aggregate is the mean of the tasks' primary metrics, and the tasks need not follow one law: a head that
branches deeper may train differently for tagging than for saliency. So each calibration row also records its
tasks' metrics, and a **per-task form** fits one such line per task, each through that task's own inherited
metric, and predicts their mean. Which form a run uses is decided on the calibration runs alone, by the lower
leave-one-shape-out error (recorded beside the model), never by the searched trials the benchmarks judge it on.

The calibration file (JSON) names the data set and its content hash, the recipe and steps, and each shape's
result. For the built-in data set one is shipped (``search/calibration/builtin.json``, written by
``compress calibrate-quality``); a run uses it when its data hash matches, and says so in run.json.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from compress.errors import ConfigError

__all__ = [
    "BUILTIN_CALIBRATION",
    "SAMPLES",
    "SHAPES",
    "QualityCalibration",
    "QualityModel",
    "ShapeResult",
    "applicable",
    "calibrate_quality",
    "calibration_hash",
    "fit_for_run",
    "fit_quality_model",
    "graph_flops",
    "resolve_calibration",
    "space_samples",
]

#: hand-scaled MobileNetV3 shapes (``search.baselines`` names) trained standalone to calibrate the model:
#: both families, widths x0.35-1.0, the two upper resolutions — a 6x spread of compute
SHAPES = (
    "mnv3-large-035-r128",
    "mnv3-small-050-r128",
    "mnv3-large-075-r128",
    "mnv3-small-075-r160",
    "mnv3-small-100-r160",
    "mnv3-large-100-r160",
)
#: architectures drawn at random from the default space (pruning included) and trained standalone beside the
#: shapes: the shapes share one head layout and MobileNetV3's depths, so alone they cannot show what depth,
#: kernels, expansion, pruning and branch points do to a short training; the search's candidates vary them all
SAMPLES = 10
#: the draws' seed: fixed, so every calibration draws the same architectures, and not a search's seed (0 by
#: default), so no sampler's first trials repeat them
SAMPLE_SEED = 7919
SAMPLE_POOL = 8  # draws per sample kept; the samples are spread evenly over the pool's ln(FLOPs)
BUILTIN_CALIBRATION = Path(__file__).parent / "calibration" / "builtin.json"
FORMAT = 1


@dataclass(frozen=True)
class ShapeResult:
    """One shape trained standalone: validation quality after ``steps`` steps from scratch."""

    name: str
    arch: str
    flops: float
    seed: int
    quality: float  # aggregate validation quality after training
    seconds: float
    candidate: dict[str, Any] | None = None  # ``Candidate.to_dict()``: rebuilds a drawn architecture
    #: each task's primary validation metric x 100 (``compress.metrics.PRIMARY_METRICS``), whose mean is
    #: ``quality``; None in files written before it was recorded (such rows are retrained on resume)
    tasks: dict[str, float] | None = None

    def rebuild(self, shapes: dict[str, Any]) -> Any:
        """The ``Candidate`` this row trained: from its stored dict, else the hand-scaled shape of its name in
        ``shapes`` (``baseline_candidates``); None when neither is known."""
        from search.space import Candidate

        if self.candidate is not None:
            return Candidate.from_dict(self.candidate)
        return shapes.get(self.name)


@dataclass(frozen=True)
class QualityCalibration:
    """Standalone results of the calibration shapes on one data set, with what they depend on."""

    data: str
    data_sha256: str
    steps: int
    recipe: dict[str, Any]
    shapes: tuple[ShapeResult, ...]
    created: str = ""
    command: str = ""

    def save(self, path: str | Path) -> None:
        from compress.atomic import write_text

        body = {"format": FORMAT, **asdict(self), "shapes": [asdict(s) for s in self.shapes]}
        write_text(Path(path), json.dumps(body, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> QualityCalibration:
        path = Path(path)
        try:
            body = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(
                f"cannot read the quality calibration {path}: {exc}; write one with `compress calibrate-quality`"
            ) from None
        if not isinstance(body, dict) or body.get("format") != FORMAT:
            raise ConfigError(
                f"{path} is not a quality calibration of format {FORMAT}; write one with `compress calibrate-quality`"
            )
        try:
            shapes = tuple(ShapeResult(**s) for s in body["shapes"])
            keys = ("data", "data_sha256", "steps", "recipe", "created", "command")
            cal = cls(**{k: body[k] for k in keys if k in body}, shapes=shapes)
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"the quality calibration {path} is malformed ({exc}); rewrite it") from None
        for s in shapes:  # read by the fit only after the supernet's minutes: checked now
            numbers = [s.flops, s.quality, *(s.tasks.values() if isinstance(s.tasks, dict) else [])]
            if (s.tasks is not None and not isinstance(s.tasks, dict)) or not all(
                isinstance(v, int | float) and math.isfinite(v) for v in numbers
            ):
                raise ConfigError(
                    f"the quality calibration {path} is malformed (shape {s.name!r}: flops, quality and tasks must "
                    "hold finite numbers); rewrite it with `compress calibrate-quality`"
                )
        return cal

    def check_usable(self, path: str | Path) -> QualityCalibration:
        """Itself, or a ConfigError when it has too few shapes for the fit: said when the file is named, not
        after the supernet's minutes of training (a calibration stopped halfway holds fewer)."""
        known = [s for s in self.shapes if s.name in SHAPES or s.candidate is not None]
        if len(known) < 4:
            raise ConfigError(
                f"the quality calibration {path} has {len(known)} usable shapes (of {', '.join(SHAPES)} or drawn "
                "architectures); at least 4 are needed (rerun `compress calibrate-quality`, which resumes)"
            )
        return self


@dataclass(frozen=True)
class QualityModel:
    """``predicted = intercept + slope ln(FLOPs) + weight inherited_fp16 - scheme loss`` and its held-out error.

    With ``form == "per-task"`` each task's primary metric (x 100) gets its own line through ln(FLOPs) and that
    task's inherited metric (``tasks``: ``{task: [slope, weight, intercept]}``), and the prediction is their
    mean — the aggregate's definition — minus the scheme's loss. The form is chosen by the lower
    leave-one-shape-out error on the calibration runs (``alternatives``), never by the searched trials; a
    candidate whose heads differ from the calibration's is predicted by the aggregate line."""

    slope: float
    weight: float
    intercept: float
    loo_mae: float  # mean |error| predicting each shape from the others (quality points), of the chosen form
    loo_max: float
    shapes: int
    inherited: dict[str, float] = field(default_factory=dict)  # the shapes' inherited scores it was fitted on
    form: str = "aggregate"
    tasks: dict[str, list[float]] = field(default_factory=dict)
    alternatives: dict[str, float] = field(default_factory=dict)  # leave-one-out mean |error| of each form

    def predict(
        self,
        flops: float,
        inherited_fp16: float,
        inherited: float,
        tasks_fp16: dict[str, float] | None = None,
    ) -> float:
        """Predicted trained quality; ``tasks_fp16`` (``Quality.task_scores`` of the fp16 inherited quality) is read
        by the per-task form."""
        loss = inherited_fp16 - inherited
        if self.form == "per-task" and tasks_fp16 is not None and set(tasks_fp16) == set(self.tasks):
            lines = [b + s * math.log(flops) + w * tasks_fp16[t] for t, (s, w, b) in self.tasks.items()]
            return float(np.mean(lines)) - loss
        return self.intercept + self.slope * math.log(flops) + self.weight * inherited_fp16 - loss

    def to_dict(self) -> dict[str, Any]:
        return {
            "formula": "intercept + slope*ln(FLOPs) + weight*inherited_fp16 - (inherited_fp16 - inherited)"
            if self.form == "aggregate"
            else "mean over tasks of (intercept_t + slope_t*ln(FLOPs) + weight_t*inherited_fp16_t) "
            "- (inherited_fp16 - inherited)",
            **asdict(self),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QualityModel:
        """The model from ``to_dict``'s output (or quality_model.json, which adds its calibration's summary)."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def of_run(cls, run_dir: str | Path) -> QualityModel | None:
        """The model a run's trials were ranked by (its quality_model.json), or None for a run scored by the
        inherited score."""
        from search.rundir import QUALITY_MODEL

        path = Path(run_dir) / QUALITY_MODEL
        return cls.from_dict(json.loads(path.read_text())) if path.is_file() else None


def _nnls(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least squares with every coefficient but the last (the intercept) non-negative."""
    from scipy.optimize import lsq_linear

    lower = np.r_[np.zeros(x.shape[1] - 1), -np.inf]
    return np.asarray(lsq_linear(x, y, bounds=(lower, np.inf)).x)


def _loo(predict_without: Any, n: int, y: np.ndarray) -> np.ndarray:
    """|error| of each row predicted by ``predict_without(i)``, a fit on the other rows."""
    return np.array([abs(predict_without(i) - y[i]) for i in range(n)])


def _per_task_fit(
    rows: list[ShapeResult], inherited_tasks: dict[str, dict[str, float]]
) -> tuple[dict[str, list[float]], np.ndarray] | None:
    """Per-task lines ``[slope, weight, intercept]`` and their leave-one-out |error| on the aggregate; None
    unless every row has the same tasks, measured and inherited."""
    names = sorted(rows[0].tasks or {})
    if not names or any(sorted(s.tasks or {}) != names or sorted(inherited_tasks.get(s.name, {})) != names
                        for s in rows):  # fmt: skip
        return None
    log_f = np.array([math.log(s.flops) for s in rows])
    xs = {t: np.c_[log_f, [inherited_tasks[s.name][t] for s in rows], np.ones(len(rows))] for t in names}
    ys = {t: np.array([(s.tasks or {})[t] for s in rows]) for t in names}
    y = np.array([s.quality for s in rows])

    def without(i: int) -> float:
        keep = np.arange(len(rows)) != i
        return float(np.mean([xs[t][i] @ _nnls(xs[t][keep], ys[t][keep]) for t in names]))

    return {t: [float(c) for c in _nnls(xs[t], ys[t])] for t in names}, _loo(without, len(rows), y)


def fit_quality_model(
    calibration: QualityCalibration,
    inherited: dict[str, float],
    inherited_tasks: dict[str, dict[str, float]] | None = None,
) -> QualityModel:
    """The model fitted on the calibration shapes, ``inherited`` giving each shape's fp16 inherited score under
    the run's supernet (``inherited_tasks``: its ``Quality.task_scores``, for the per-task form); ConfigError with
    fewer than four shapes. Of the aggregate and the per-task form, the one with the lower leave-one-out
    error is used (the per-task form only where every shape has per-task results)."""
    rows = [s for s in calibration.shapes if s.name in inherited]
    if len(rows) < 4:
        raise ConfigError(
            f"the quality calibration has {len(rows)} usable shapes; at least 4 are needed "
            "(rerun `compress calibrate-quality`)"
        )
    x = np.array([[math.log(s.flops), inherited[s.name], 1.0] for s in rows])
    y = np.array([s.quality for s in rows])
    coef = _nnls(x, y)
    errors = _loo(lambda i: float(x[i] @ _nnls(np.delete(x, i, 0), np.delete(y, i))), len(rows), y)
    alternatives = {"aggregate": float(np.mean(errors))}
    form, lines = "aggregate", dict[str, list[float]]()
    per_task = _per_task_fit(rows, inherited_tasks) if inherited_tasks else None
    if per_task is not None:
        alternatives["per-task"] = float(np.mean(per_task[1]))
        if alternatives["per-task"] < alternatives["aggregate"]:
            form, (lines, errors) = "per-task", per_task
    return QualityModel(
        slope=float(coef[0]),
        weight=float(coef[1]),
        intercept=float(coef[2]),
        loo_mae=float(np.mean(errors)),
        loo_max=float(np.max(errors)),
        shapes=len(rows),
        inherited={s.name: float(inherited[s.name]) for s in rows},
        form=form,
        tasks=lines,
        alternatives=alternatives,
    )


def graph_flops(model: Any) -> float:
    """Multiply-adds x 2 of ``model`` at its own resolution (``profiles`` graph)."""
    from profiles import extract_graph

    res = model.spec.resolution
    return extract_graph(model, (1, 3, res, res)).flops


def space_samples(space: Any, scorer: Any, n: int, *, seed: int = SAMPLE_SEED) -> dict[str, Any]:
    """``n`` fp16 architectures of ``space`` drawn at random (each stage's choices and prune ratio uniform,
    ``numpy`` generator seeded by ``seed``), named ``space-00``...: from ``SAMPLE_POOL * n`` draws, the ones
    nearest to ``n`` points evenly spaced over the draws' ln(FLOPs), so a few runs cover the space's range of
    compute instead of bunching where most random draws fall. ``scorer`` builds each draw to count its FLOPs."""
    from search.space import Candidate

    if n <= 0:
        return {}
    rng = np.random.default_rng(seed)
    pool: list[tuple[float, Any]] = []
    seen: set[str] = set()
    for _ in range(SAMPLE_POOL * n):
        spec = space.arch.sample(rng)
        prune = [0.0] * len(spec.stages)
        for i in space.prunable_stages:
            prune[i] = float(space.prune[int(rng.integers(len(space.prune)))])
        cand = Candidate(spec, tuple(prune), "fp16")
        if cand.describe() not in seen:
            seen.add(cand.describe())
            pool.append((math.log(graph_flops(scorer.build(cand, quantize=False))), cand))
    pool.sort(key=lambda fc: fc[0])
    logs = np.array([f for f, _ in pool])
    picks: list[int] = []
    for target in np.linspace(logs[0], logs[-1], min(n, len(pool))):
        free = [i for i in range(len(pool)) if i not in picks]
        picks.append(min(free, key=lambda i: abs(logs[i] - target)))
    return {f"space-{k:02d}": pool[i][1] for k, i in enumerate(sorted(picks))}


def _resumable(
    out: Path | None, *, data_sha256: str, steps: int, seed: int, recipe: dict
) -> dict[str, ShapeResult]:
    """Results already in ``out`` from the same data, steps, seed and recipe, by architecture: a rerun (after a
    crash, or with more samples) trains only what is missing. Anything else in ``out`` is not reused, nor a row
    without its per-task metrics (written before they were recorded)."""
    if out is None or not out.is_file():
        return {}
    try:
        before = QualityCalibration.load(out)
    except ConfigError:
        return {}
    same = (before.data_sha256, before.steps, before.recipe) == (data_sha256, steps, recipe)
    return {s.arch: s for s in before.shapes if same and s.seed == seed and s.tasks is not None}


def _train_shape(scorer: Any, name: str, cand: Any, *, steps: int, seed: int) -> ShapeResult:
    """``cand`` trained from scratch with the final-training recipe, as a calibration row."""
    from search.finalize import train_candidate

    trained = train_candidate(scorer, cand, steps=steps, seed=seed, init="scratch", label=name)
    return ShapeResult(
        name=name,
        arch=cand.describe(),
        flops=graph_flops(trained.model),
        seed=seed,
        quality=float(trained.val_trained.aggregate),
        seconds=round(trained.seconds, 1),
        candidate=cand.to_dict(),
        tasks=trained.val_trained.task_scores(),
    )


def _calibration_plan(
    data: str, *, samples: int, cache_dir: str | Path | None, progress: bool
) -> tuple[str, Any, dict[str, Any]]:
    """The data set's content hash, a scorer on an untrained supernet (only its architecture is used: the
    shapes start from fresh weights) and the candidates to train: the shapes, then the drawn ones."""
    from compress.data import load_splits
    from compress.model import Supernet, default_space
    from compress.training import TrainConfig
    from search._identity import content_hash
    from search.baselines import baseline_candidates
    from search.scorer import Scorer
    from search.space import load_space

    splits = load_splits(data, resolution=TrainConfig().resolution, cache_dir=cache_dir, progress=progress)
    data_hash = content_hash(splits.train, splits.val)
    classes = splits.train.num_classes
    del splits
    space = load_space(None, num_classes=classes)
    shapes = baseline_candidates(space)
    scorer = Scorer(Supernet(default_space(num_classes=classes)), data=data, devices=[], cache_dir=cache_dir)
    return (
        data_hash,
        scorer,
        {**{name: shapes[name] for name in SHAPES}, **space_samples(space, scorer, samples)},
    )


def calibrate_quality(
    data: str,
    *,
    steps: int = 300,
    seed: int = 0,
    samples: int = SAMPLES,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    command: str = "",
    out: str | Path | None = None,
) -> QualityCalibration:
    """Train every shape of :data:`SHAPES` and ``samples`` architectures drawn from the default space
    (:func:`space_samples`) from scratch for ``steps`` steps with the final-training recipe
    (``search.finalize.train_candidate``) and record their validation quality. With ``out``, the file is
    rewritten after every shape, and results already in it (same data, steps, seed and recipe) are kept
    rather than retrained."""
    from compress.finetune import FinetuneRecipe
    from compress.progress import Bar
    from search.finalize import RECIPE

    if steps < 1:
        raise ConfigError(f"--steps must be >= 1, but got {steps}")
    if samples < 0:
        raise ConfigError(f"--samples must be >= 0, but got {samples}")
    if out is not None and Path(out).is_dir():  # said now, not after the first shape's minutes of training
        raise ConfigError(
            f"--out {out} is a directory; give the calibration file to write, e.g. {Path(out) / 'cal.json'}"
        )
    data_hash, scorer, todo = _calibration_plan(data, samples=samples, cache_dir=cache_dir, progress=progress)
    recipe: FinetuneRecipe = RECIPE
    out = Path(out) if out is not None else None
    done = _resumable(out, data_sha256=data_hash, steps=steps, seed=seed, recipe=asdict(recipe))
    results: list[ShapeResult] = []

    def calibration(*, keep_unreached: bool = False) -> QualityCalibration:
        rows = list(results)
        if keep_unreached:  # a file saved halfway keeps what the earlier file held beyond this run's reach
            rows += [r for a, r in done.items() if a not in {x.arch for x in results}]
        return QualityCalibration(
            data=data,
            data_sha256=data_hash,
            steps=steps,
            recipe=asdict(recipe),
            shapes=tuple(rows),
            created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            command=command,
        )

    with Bar("calibration shapes", total=len(todo), enabled=progress, transient=False) as bar:
        for name, cand in todo.items():
            arch = cand.describe()
            if arch in done:
                results.append(dataclasses.replace(done[arch], name=name, candidate=cand.to_dict()))
                bar.update(advance=1, info=f"{name}: {results[-1].quality:.1f} (kept from {out})")
                continue
            results.append(_train_shape(scorer, name, cand, steps=steps, seed=seed))
            if out is not None:  # a crash loses only the shape in hand
                calibration(keep_unreached=True).save(out)
            bar.update(advance=1, info=f"{name}: {results[-1].quality:.1f}")
    return calibration()


def resolve_calibration(setting: str) -> QualityCalibration | None:
    """The calibration ``--quality-calibration`` names: ``auto`` (the shipped one for ``builtin``, checked
    against the run's data later), ``none``, or a file (ConfigError when unreadable)."""
    if setting == "none":
        return None
    if setting == "auto":
        if not BUILTIN_CALIBRATION.is_file():
            return None
        return QualityCalibration.load(BUILTIN_CALIBRATION).check_usable(BUILTIN_CALIBRATION)
    path = Path(setting)
    if not path.is_file():
        raise ConfigError(
            f"--quality-calibration {setting}: no such file; write one with `compress calibrate-quality --out "
            f"{setting}`, or pass 'auto' or 'none'"
        )
    return QualityCalibration.load(path).check_usable(path)


def applicable(
    calibration: QualityCalibration | None, setting: str, *, data: str, data_sha256: str
) -> tuple[QualityCalibration | None, str]:
    """The calibration to use on this run's data and a sentence saying why (or why not). A file the user named
    that was calibrated on other data is a ConfigError; ``auto`` falls back to the inherited score."""
    if calibration is None:
        why = "--quality-calibration none" if setting == "none" else "no calibration for this data set"
        return None, f"scored as inherited ({why}; `compress calibrate-quality` writes one)"
    if calibration.data_sha256 != data_sha256:
        if setting != "auto":
            raise ConfigError(
                f"--quality-calibration {setting} was calibrated on {calibration.data!r} (data sha256 "
                f"{calibration.data_sha256}), not on this run's {data!r} ({data_sha256}); rerun "
                f"`compress calibrate-quality --data {data}`"
            )
        return None, (
            f"scored as inherited (the shipped calibration is for {calibration.data!r} data {calibration.data_sha256}, "
            f"this run's data is {data_sha256}; `compress calibrate-quality` writes one)"
        )
    return calibration, (
        f"predicted trained quality: {len(calibration.shapes)} shapes trained {calibration.steps} steps from "
        f"scratch on {calibration.data!r}"
    )


def calibration_hash(calibration: QualityCalibration) -> str:
    """A short hash of what the calibration holds: part of the study's identity."""
    import hashlib

    body = json.dumps([calibration.data_sha256, calibration.steps, [asdict(s) for s in calibration.shapes]])
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def fit_for_run(calibration: QualityCalibration, scorer: Any, space: Any) -> QualityModel:
    """The run's quality model: the calibration shapes scored (fp16, inherited) by ``scorer``'s supernet, which
    was trained on the whole default space (a space file only narrows the choices)."""
    from search.baselines import baseline_candidates, with_quant
    from search.space import load_space

    shapes = baseline_candidates(load_space(None, num_classes=space.arch.num_classes))
    inherited, inherited_tasks = {}, {}
    for s in calibration.shapes:
        cand = s.rebuild(shapes)
        if cand is not None:
            quality = scorer.score(with_quant(cand, "fp16")).quality
            inherited[s.name], inherited_tasks[s.name] = quality.aggregate, quality.task_scores()
    return fit_quality_model(calibration, inherited, inherited_tasks)

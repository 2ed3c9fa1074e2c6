"""``compress search``: the whole job, from data to the chosen deployable model, in one run directory.

data → supernet (trained once, reused by config hash) → Optuna study (resumable) → trials.csv, front.csv,
hypervolume.csv, baselines.csv → the chosen candidate (highest quality among the feasible, ties to lower
latency) → fine-tuned, compressed, exported to ``chosen/`` (see ``search.finalize``). The run directory's
layout is documented in ``search.rundir``.
"""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing as mp
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compress.errors import ConfigError, RunError
from compress.progress import Bar
from compress.training import SUPERNET_FILE
from search._identity import check_validation, content_hash, file_hash
from search.config import DEFAULT_DEVICES, SearchConfig, SearchResult
from search.outputs import write_outputs
from search.quality import (
    QualityCalibration,
    QualityModel,
    applicable,
    calibration_hash,
    fit_for_run,
    resolve_calibration,
)
from search.redaction import redact
from search.rundir import FORMAT, QUALITY_MODEL, RUN_JSON, write_json
from search.space import SearchSpace, load_space
from search.storage import check_storage
from search.study import Limits

if TYPE_CHECKING:
    from search.finalize import TrialCutoff

__all__ = ["DEFAULT_DEVICES", "SearchConfig", "SearchResult", "run_search"]


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in (
        "torch",
        "optuna",
        "coremltools",
        "torch-pruning",
        "nncf",
        "numpy",
        "pandas",
        "onnx",
        "onnxruntime",
        "compress-toolkit",
    ):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _write_run_json(cfg: SearchConfig, space: Any, extra: dict[str, Any]) -> dict[str, Any]:
    path = cfg.run_dir / RUN_JSON
    old = json.loads(path.read_text()) if path.exists() else {}
    if old and old.get("format") != FORMAT:
        raise RunError(
            f"{path} has run format {old.get('format')!r}; this toolkit writes {FORMAT}: use another --out"
        )
    data = {
        "format": FORMAT,
        "toolkit_version": _versions()["compress-toolkit"],
        "created": old.get("created", dt.datetime.now(dt.UTC).isoformat(timespec="seconds")),
        "finished": None,
        "command": _command(),
        "config": {
            "budget_ms": cfg.budget_ms,
            "confidence": cfg.confidence,
            "devices": list(cfg.devices),
            "trials": cfg.trials,
            "timeout_s": cfg.timeout_s,
            "sampler": cfg.sampler,
            "objectives": list(cfg.objectives),
            "memory_mb": cfg.memory_mb,
            "disk_mb": cfg.disk_mb,
            "data": cfg.data,
            "seed": cfg.seed,
            "study_name": cfg.name,
            "storage": redact(cfg.storage_url),
            "workers": cfg.workers,
            "eval_images": cfg.eval_images,
            "finetune_steps": cfg.finetune_steps,
            "time_goal_s": cfg.time_goal_s,
            "space": space.to_dict(),
            "train": cfg.train.to_dict(),
            "init": None if cfg.init is None else str(cfg.init),
            "pretrain": cfg.pretrain,
            "quality_calibration": cfg.quality_calibration,
        },
        "versions": _versions(),
        **{k: v for k, v in old.items() if k in ("supernet", "provenance", "splits", "quality_model")},
        **extra,
    }
    write_json(path, data)
    return data


def _command() -> str | None:
    """The command line that started this run, passwords redacted (None when not run as ``compress``)."""
    from search.redaction import redact_argv

    if not (sys.argv and "compress" in Path(sys.argv[0]).name):
        return None
    return " ".join(["compress", *redact_argv(sys.argv[1:])])


def _refuse_pickled_supernet(run_dir: Path) -> None:
    """A run directory of an older release holds a pickled supernet.pt, which this release never loads."""
    old = run_dir / "supernet.pt"
    if old.exists() and not (run_dir / SUPERNET_FILE).exists():
        raise RunError(
            f"{old} is a torch pickle written by an older release; this release reads only {SUPERNET_FILE} "
            f"(no pickle): delete {old.name} to retrain the supernet here, or use another --out"
        )


def _refuse_other_settings(cfg: SearchConfig, space: Any) -> None:
    """A rerun into an existing run directory must keep its study's settings: refuse before run.json is
    rewritten, so a mistyped rerun leaves the run directory as it was."""
    path = cfg.run_dir / RUN_JSON
    if not path.is_file():
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8")).get("config") or {}
    except (OSError, ValueError):
        return  # an unreadable run.json is reported where it is read
    if old.get("study_name", cfg.name) != cfg.name:
        return
    # the space is checked when the study opens (its class count is only known once the data is loaded)
    new = json.loads(json.dumps({k: v for k, v in cfg.study_config(space).items() if k != "space"}))
    differ = sorted(k for k, v in new.items() if k in old and old[k] != v)
    if differ:
        raise ConfigError(
            f"study {cfg.name!r} was created with other settings ({', '.join(differ)}); rerun with the "
            "same settings to continue it, or choose another --out / --study-name"
        )


def _splits_note(splits: Any) -> dict[str, Any]:
    """Sizes of the three splits and where the test split came from (it is never trained on or searched on)."""
    return {
        "train": len(splits.train),
        "val": len(splits.val),
        "test": len(splits.test),
        "test_origin": splits.test_origin,
        "rule": "val decides (search, choice, keeping the final training); test only reports",
    }


def _provenance(devices: tuple[str, ...]) -> dict[str, Any]:
    """Where each device's predictions come from: measured, calibrated (with its LOO error) or spec-derived."""
    from profiles import load_profile

    out = {}
    for d in devices:
        p = load_profile(d)
        cal = p.calibration
        out[d] = {
            "source": p.basis,
            "error_pct": cal.loo_median_abs_pct if cal is not None else None,
            "note": cal.data if cal is not None else "derived from spec-sheet peak rates",
        }
    return out


def _check_devices(devices: tuple[str, ...]) -> None:
    from profiles import load_profile

    for d in devices:
        load_profile(d)  # a bad name raises ProfileError (a ConfigError) naming the known devices


def _worker(
    cfg: SearchConfig, rank: int, identity: dict[str, str] | None = None, cutoff: TrialCutoff | None = None
) -> None:
    """One extra local worker process: same storage, same study, its own sampler seed."""
    import torch

    from compress.training import load_supernet

    torch.set_num_threads(1)
    space = load_space(
        cfg.space_file,
        num_classes=json.loads((cfg.run_dir / RUN_JSON).read_text())["config"]["space"]["arch"][
            "num_classes"
        ],
    )
    supernet = load_supernet(cfg.run_dir / SUPERNET_FILE)
    study, scorer = _open(cfg, space, supernet, rank=rank, progress=False, identity=identity)
    scorer.quality_model = QualityModel.of_run(cfg.run_dir)  # rank 0 fitted it before starting this worker
    _trials(cfg, space, study, scorer, cutoff=cutoff)


def _open(
    cfg: SearchConfig,
    space: Any,
    supernet: Any,
    *,
    rank: int,
    progress: bool,
    identity: dict[str, str] | None = None,
) -> tuple[Any, Any]:
    """The study (sampler seeded per worker rank) and the scorer, as every worker process builds them."""
    from search.scorer import Scorer
    from search.storage import create_study
    from search.study import make_sampler, seed_population

    sampler = make_sampler(cfg.sampler, seed=cfg.seed + 1000 * rank, population_size=cfg.population_size)
    study = create_study(
        storage=cfg.storage_url,
        study_name=cfg.name,
        objectives=cfg.objectives,
        sampler=sampler,
        config=cfg.study_config(space, identity),
        exclusive=rank == 0 and cfg.storage is None,  # the run dir's own study, its lock held, no worker yet
    )
    scorer = Scorer(
        supernet,
        data=cfg.data,
        devices=list(cfg.devices),
        eval_images=cfg.eval_images,
        cache_dir=cfg.cache_dir,
        seed=cfg.seed,
        progress=progress,
        confidence=cfg.confidence,
    )
    if rank == 0 and cfg.sampler != "random":  # a quarter of it just under the budget (costed, not scored)
        seed_population(
            study, space, cfg.population_size, seed=cfg.seed, cost=scorer.cost_row, limits=cfg.limits()
        )
    return study, scorer


def _trials(
    cfg: SearchConfig, space: Any, study: Any, scorer: Any, callbacks: list[Any] = (),  # type: ignore[assignment]
    *, cutoff: TrialCutoff | None = None,
) -> str | None:  # fmt: skip
    """Run this process's trials; the cutoff's reason when it refused before the first (``run_trials``)."""
    from search.study import run_trials

    return run_trials(
        study,
        scorer,
        space,
        cfg.limits(),
        objectives=cfg.objectives,
        trials=cfg.trials,
        timeout_s=cfg.timeout_s,
        callbacks=list(callbacks),
        stop=cutoff,
    )


def _trial_cutoff(cfg: SearchConfig, space: SearchSpace, started: float) -> TrialCutoff:
    """The time goal's limit on starting trials (``search.finalize.TrialCutoff``) for a run that began at
    ``started`` (``time.monotonic()``): the baselines still to score count against it."""
    from search.baselines import baseline_candidates
    from search.finalize import TrialCutoff
    from search.rundir import BASELINES

    after = 0 if (cfg.run_dir / BASELINES).exists() else len(baseline_candidates(space))
    goal_end = time.time() + cfg.time_goal_s - (time.monotonic() - started)
    return TrialCutoff(
        goal_end=goal_end,
        goal_s=cfg.time_goal_s,
        after=after,
        min_trials=min(cfg.trials, cfg.population_size),
    )


def run_search(
    cfg: SearchConfig, *, progress: bool = True, callbacks: Sequence[Callable[[Any, Any], None]] = (),
    started: float | None = None,
) -> SearchResult:  # fmt: skip
    """Run (or continue) the search ``cfg`` describes and write the run directory.

    ``callbacks`` are Optuna study callbacks ``f(study, frozen_trial)`` called after each trial of this
    process (e.g. optuna-integration's MLflow or Weights & Biases callbacks). The run directory is locked
    while the search runs: a second search on the same directory fails at once (``search._lock``).
    ``started``: the ``time.monotonic()`` the time goal counts from (the ``compress`` command passes its
    process's start); default: now.
    """
    from search._lock import run_lock

    started = time.monotonic() if started is None else min(started, time.monotonic())
    with run_lock(cfg.run_dir):
        return _search(cfg, progress=progress, callbacks=callbacks, started=started)


def _search(
    cfg: SearchConfig, *, progress: bool, callbacks: Sequence[Callable[[Any, Any], None]], started: float
) -> SearchResult:
    space = _check_before_work(cfg)
    space, trained, identity = _data_and_supernet(cfg, space, progress, started)
    calibration, why = applicable(
        resolve_calibration(cfg.quality_calibration), cfg.quality_calibration, data=cfg.data,
        data_sha256=identity["data_sha256"],
    )  # fmt: skip
    # absent without a calibration, so studies made before quality models continue as they were
    if calibration is not None:
        identity["quality_calibration_sha256"] = calibration_hash(calibration)
    study, scorer = _open(cfg, space, trained.supernet, rank=0, progress=progress, identity=identity)
    _set_quality_model(cfg, space, scorer, calibration, why)
    cutoff = _trial_cutoff(cfg, space, started)
    refused = _run_workers_and_trials(cfg, space, study, scorer, identity, progress, callbacks, cutoff)
    _note_cut_trials(cfg, space, study, refused)
    return write_outputs(cfg, space, study, scorer, progress=progress, started=started)


def _set_quality_model(
    cfg: SearchConfig, space: SearchSpace, scorer: Any, calibration: QualityCalibration | None, why: str
) -> None:
    """Fit the run's quality model (``search.quality``) and give it to ``scorer``; written to the run directory
    for the other workers and the report, and summarised in run.json."""
    path = cfg.run_dir / QUALITY_MODEL
    note: dict[str, Any] = {"scoring": why}
    if calibration is None:
        path.unlink(missing_ok=True)
    else:
        model = fit_for_run(calibration, scorer, space)
        scorer.quality_model = model
        write_json(path, {**model.to_dict(), "calibration": {"data": calibration.data, "steps": calibration.steps,
                          "command": calibration.command, "created": calibration.created}})  # fmt: skip
        note.update(model.to_dict())
    _write_run_json(cfg, space, {"quality_model": note})


def _check_before_work(cfg: SearchConfig) -> SearchSpace:
    """Everything that can fail fast, before the data and the supernet's minutes: devices, the space file,
    the ``--init`` weights, the storage, the run directory and its earlier settings. Returns the space."""
    _check_devices(cfg.devices)
    space = load_space(cfg.space_file)
    resolve_calibration(cfg.quality_calibration)  # a missing or malformed file fails before any work
    if cfg.init is not None:
        from compress.model.mnv3_weights import read_mobilenetv3

        read_mobilenetv3(cfg.init)
    if cfg.storage is not None:
        check_storage(cfg.storage)
    run_dir = cfg.run_dir
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--out {run_dir} exists and is not a directory")
    run_dir.mkdir(parents=True, exist_ok=True)
    _refuse_pickled_supernet(run_dir)
    _refuse_other_settings(cfg, space)
    _write_run_json(cfg, space, {"provenance": _provenance(cfg.devices)})
    return space


def _data_and_supernet(
    cfg: SearchConfig, space: SearchSpace, progress: bool, started: float | None = None
) -> tuple[SearchSpace, Any, dict[str, str]]:
    """Load the splits (validation checked before training), train or reuse the supernet; returns the space
    with the data's class count, the training result and the study identity (supernet and data hashes).
    The supernet's training ends by ``cfg.supernet_time_share`` of the time goal after ``started`` (the
    run's ``time.monotonic()`` start)."""
    from compress.data import load_splits
    from compress.pretrain import joint_phase_pretraining, start_supernet

    splits = load_splits(
        cfg.data, resolution=cfg.train.resolution, cache_dir=cfg.cache_dir, progress=progress
    )
    train_data, val_data = splits.train, splits.val
    _write_run_json(cfg, space, {"splits": _splits_note(splits)})
    del splits
    check_validation(val_data, cfg.data)  # before the supernet's minutes of training, not after
    data_hash = content_hash(train_data, val_data)
    del val_data
    classes = train_data.num_classes
    space = load_space(cfg.space_file, num_classes=classes)
    limit = None
    if cfg.supernet_time_share is not None and started is not None:
        limit = cfg.supernet_time_share * cfg.time_goal_s - (time.monotonic() - started)
    # The supernet is trained on the full default space; a space file only narrows the choices.
    trained = start_supernet(
        load_space(None, num_classes=classes).arch,
        train_data,
        cfg.run_dir / SUPERNET_FILE,
        config=cfg.train,
        data_key=f"{cfg.data}@{cfg.train.resolution}",
        init=cfg.init,
        pretrain=joint_phase_pretraining(cfg.train) if cfg.pretrain else None,
        progress=progress,
        time_limit_s=limit,
    )
    del train_data
    summary = {
        "path": SUPERNET_FILE,
        "config_hash": trained.config_hash,
        "train_minutes": round(trained.seconds / 60, 2),
        "images_per_second": round(trained.images_per_second, 1),
        "reused": trained.reused,
        "steps": trained.steps,
    }
    if trained.steps < trained.planned_steps:
        summary["cut"] = (
            f"{trained.steps} of the recipe's {trained.planned_steps} steps: the rest would not have ended "
            f"within {cfg.supernet_time_share:g} of the time goal ({cfg.time_goal_s:g} s); "
            "a longer --time-goal or --train-steps trains them all"
        )
        print(f"supernet: {summary['cut']}", file=sys.stderr)
    _write_run_json(cfg, space, {"supernet": summary})
    identity = {"supernet_sha256": file_hash(cfg.run_dir / SUPERNET_FILE), "data_sha256": data_hash}
    return space, trained, identity


def _note_cut_trials(cfg: SearchConfig, space: SearchSpace, study: Any, refused: str | None = None) -> None:
    """run.json's ``trials``: how many the study asked for and holds, and why it stopped short (the time goal,
    ``--timeout``; only when it stopped short), said on stderr too. ``refused``: why this call started no
    trial at all (a rerun whose time goal was spent), which no trial records; else the latest skipped trial's
    reason."""
    from optuna.trial import TrialState

    done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    skipped = [
        t for t in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)) if "skipped" in t.user_attrs
    ]
    note: dict[str, Any] = {"requested": cfg.trials, "finished": done}
    if done < cfg.trials and refused is not None:
        note["stopped"] = f"not run: {refused}"
    elif done < cfg.trials and skipped:
        note["stopped"] = str(max(skipped, key=lambda t: t.number).user_attrs["skipped"])
    if "stopped" in note:
        print(f"search: {done} of {cfg.trials} trials finished; {note['stopped']}", file=sys.stderr)
    _write_run_json(cfg, space, {"trials": note})


def _run_workers_and_trials(
    cfg: SearchConfig, space: SearchSpace, study: Any, scorer: Any, identity: dict[str, str], progress: bool,
    callbacks: Sequence[Callable[[Any, Any], None]], cutoff: TrialCutoff | None = None,
) -> str | None:  # fmt: skip
    """Run the trials here and, with ``--workers N``, in N - 1 more local processes on the same storage;
    ``cutoff`` stops starting trials when the time goal runs short (its reason is returned when it refused
    before this process's first trial)."""
    import torch

    procs = []
    if cfg.workers > 1:
        ctx = mp.get_context("spawn")
        procs = [
            ctx.Process(target=_worker, args=(cfg, rank, identity, cutoff), daemon=False)
            for rank in range(1, cfg.workers)
        ]
        for p in procs:
            p.start()
        torch.set_num_threads(1)
    bar = _SearchProgress(progress, cfg.trials, cfg.limits())
    try:
        return _trials(cfg, space, study, scorer, [bar.callback, *callbacks], cutoff=cutoff)
    finally:
        for p in procs:
            p.join()
        bar.close()


class _SearchProgress:
    """Trials done, feasible count, front size and best quality within budget, on a lasting progress bar."""

    def __init__(self, enabled: bool, total: int, limits: Limits) -> None:
        self.limits = limits
        self._bar = Bar("search", total=total, enabled=enabled, transient=False, elapsed=True)

    def callback(self, study: Any, trial: Any) -> None:
        from optuna.trial import TrialState

        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        feas = [
            t for t in done if all(v <= 0 for k, v in t.system_attrs.items() if k.startswith("constraints:"))
        ]
        best = max((t.values[0] for t in feas), default=None)
        front = len(study.best_trials)
        best_txt = f"{best:.1f}" if best is not None else "—"
        self._bar.update(
            len(done), info=f"feasible {len(feas)} · front {front} · best quality in budget {best_txt}"
        )

    def close(self) -> None:
        self._bar.close()

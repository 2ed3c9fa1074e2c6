"""Fault injection: SIGKILL a tiny ``compress search`` at random moments of every phase, rerun the same command.

Each attempt runs the installed ``compress`` console script (PYTHONPATH set to this checkout) in its own
process group and kills the whole group with SIGKILL at a random moment after a phase marker shows up in the
run directory: start-up, supernet training, trials, baselines and finalize, export (the ``chosen/`` staging
folder). After every kill the finished trials are read from the study; after the last, clean rerun:

- no finished trial is lost (each one kept its values) or counted twice (trials.csv and the study agree, and
  the study holds exactly ``--trials`` finished trials);
- ``chosen/`` is complete and consistent with card.json (trial, spec, scheme, listed artifacts);
- every file in the run directory parses, and no temporary file or staging folder is left.

Prints ``chaos: kills survived S / tried T``. Marked slow (about 3 minutes on an idle 2-core machine).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPACE = "resolutions: [96]\nwidths: [0.35]\ndepths: [1]\nkernels: [3]\nexpands: [3]\nprune: [0.0]\nquant: [fp16]\n"
TRIALS = 3


def _compress() -> str:
    exe = shutil.which("compress") or str(Path(sys.executable).with_name("compress"))
    if not Path(exe).is_file():
        pytest.skip("the compress console script is not installed (pip install -e .)")
    return exe


def _trials(run: Path) -> list:
    """The study's trials as a new reader sees them (empty while the study does not exist yet)."""
    from search.storage import STUDY_JOURNAL, load_study

    if not (run / STUDY_JOURNAL).exists():
        return []
    try:
        return load_study(str((run / STUDY_JOURNAL).resolve()), run.name).get_trials(deepcopy=False)
    except KeyError:  # no study yet
        return []


def _complete(run: Path) -> dict[int, tuple[float, ...]]:
    """Finished trials in the study: number -> objective values."""
    return {t.number: tuple(t.values) for t in _trials(run) if t.state.name == "COMPLETE"}


def _rows(run: Path) -> int:
    """Trials of any state in the study (a new row: a trial has started)."""
    return len(_trials(run))


def _newer(path: Path, since: float) -> bool:
    try:
        return path.stat().st_mtime > since
    except OSError:
        return False


def _reached(phase: str, run: Path, since: float, rows: int) -> bool:
    """Whether this attempt has got to ``phase`` (markers written by this attempt, not by earlier ones)."""
    if phase == "start":
        return True
    if phase == "training":
        return _newer(run / "run.json", since) and not (run / "supernet.safetensors").exists()
    if phase == "trials":
        return _rows(run) > rows
    if phase == "finalize":
        return _newer(run / "trials.csv", since)
    if phase == "export":
        return run.exists() and any(p.name.startswith(".chosen.new-") for p in run.iterdir())
    return False


def _reachable(phase: str, run: Path) -> bool:
    """Whether a rerun still has ``phase`` ahead of it."""
    if phase == "training":
        return not (run / "supernet.safetensors").exists()
    if phase == "trials":
        return len(_complete(run)) < TRIALS
    return True


def _attempt(cmd, env, cwd, run: Path, phase: str, rng: random.Random, limit_s: float) -> str:
    """Start the command; SIGKILL its process group at a random moment once ``phase`` is reached."""
    since, rows = time.time() - 1.0, _rows(run)
    proc = subprocess.Popen(
        cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    start, armed = time.monotonic(), None
    while proc.poll() is None and time.monotonic() - start < limit_s:
        if armed is None and _reached(phase, run, since, rows):
            armed = time.monotonic() + (rng.uniform(1.0, 8.0) if phase == "start" else rng.uniform(0.0, 2.0))
        if armed is not None and time.monotonic() >= armed:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return "killed"
        time.sleep(0.05)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return "killed (limit)"
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    assert proc.returncode == 0, err[-3000:]
    return "finished"


def _check_files(run: Path) -> None:
    """Every file parses; no temporary file or staging folder is left."""
    import onnx
    import pandas as pd
    from safetensors import safe_open

    leftovers = [p.name for p in run.iterdir() if p.name.endswith(".tmp") or p.name.startswith(".chosen.")]
    assert not leftovers, leftovers
    for path in sorted(run.rglob("*")):
        if any(part.endswith(".mlpackage") for part in path.relative_to(run).parts[:-1]):
            continue  # inside the package: checked as a whole below
        if path.is_dir() and not path.name.endswith(".mlpackage"):
            continue
        name = path.name
        if name.endswith(".json") or name == ".lock":
            json.loads(path.read_text())
        elif name.endswith(".csv"):
            pd.read_csv(path)
        elif name.endswith(".safetensors"):
            with safe_open(str(path), framework="pt") as f:
                assert list(f.keys())
        elif name.endswith(".onnx"):
            onnx.checker.check_model(onnx.load(str(path)))
        elif name.endswith(".journal"):  # every line one JSON record (Optuna's journal), the last one ended
            text = path.read_text(encoding="utf-8")
            assert text.endswith("\n") and all(json.loads(line) for line in text.splitlines())
        elif name.endswith(".mlpackage"):
            import coremltools as ct

            ct.models.MLModel(str(path), skip_model_load=True)
        elif name.endswith((".html", ".md", ".txt", ".yaml")):
            path.read_text(encoding="utf-8")
        else:
            raise AssertionError(f"unexpected file in the run directory: {path}")


def _check_chosen(run: Path) -> None:
    import pandas as pd

    from compress.model.checkpoint import read_spec
    from compress.model.spec import ArchSpec

    card = json.loads((run / "chosen" / "card.json").read_text())
    front = pd.read_csv(run / "front.csv")
    assert card["trial"] in set(front["trial"])
    row = front[front["trial"] == card["trial"]].iloc[0]
    assert (
        ArchSpec.from_json(row["spec"])
        == ArchSpec.from_dict(card["spec"])
        == read_spec(run / "chosen" / "model.safetensors")
    )
    assert row["quant"] == card["quant"]
    for name in card["artifacts"]:
        assert (run / "chosen" / name).exists(), name
    assert {"model.safetensors", "model.onnx", "model.mlpackage"} <= set(card["artifacts"]), card["errors"]


@pytest.mark.slow
def test_sigkill_at_random_moments_then_rerun(tmp_path):
    from compress.data import SceneConfig, generate_scenes

    rng = random.Random(int(os.environ.get("CHAOS_SEED", "15")))
    data = generate_scenes(
        tmp_path / "coco", SceneConfig(num_train=24, num_val=8, image_size=64), progress=False
    )
    (tmp_path / "space.yaml").write_text(SPACE)
    run = tmp_path / "run"
    cmd = [_compress(), "-q", "search", "--data", f"coco:{data}", "--space", str(tmp_path / "space.yaml")]
    cmd += ["--trials", str(TRIALS), "--train-steps", "2", "--finetune-steps", "1", "--eval-images", "8"]
    cmd += ["--devices", "a11,m1", "--out", str(run)]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "OMP_NUM_THREADS": "2",
    }
    env.pop("COMPRESS_STORAGE", None)

    # one kill at start-up, then the phases in order; once a phase is behind the study (supernet trained, all
    # trials finished), the kills go to finalize and export, which every rerun goes through again
    plan = ["start", "training", "training", "trials", "trials", "trials", "finalize", "export"]
    seen: dict[int, tuple[float, ...]] = {}
    tried = survived = attempts = 0
    log = []
    while tried < 10 and attempts < 20:
        phase = plan[attempts] if attempts < len(plan) else rng.choice(["finalize", "export"])
        attempts += 1
        if not _reachable(phase, run):
            phase = rng.choice(["finalize", "export"])
        outcome = _attempt(cmd, env, tmp_path, run, phase, rng, limit_s=300)
        log.append(f"{phase}: {outcome}")
        killed = outcome.startswith("killed")
        tried += killed
        now = _complete(run)
        lost = {n for n in seen if now.get(n) != seen[n]}
        assert not lost, f"after {log}: finished trials lost or changed: {sorted(lost)}"
        assert len(now) <= TRIALS, f"after {log}: {len(now)} finished trials, more than {TRIALS}"
        survived += killed
        seen.update(now)

    final = _attempt(cmd, env, tmp_path, run, "never", rng, limit_s=600)
    assert final == "finished"
    done = _complete(run)
    assert len(done) == TRIALS and all(done[n] == v for n, v in seen.items())
    trials = json.loads(json.dumps(sorted(done)))
    import pandas as pd

    table = pd.read_csv(run / "trials.csv")
    assert sorted(table["trial"]) == trials  # each finished trial once, none of the failed ones
    _check_chosen(run)
    _check_files(run)
    print(f"\nchaos: kills survived {survived} / tried {tried} ({'; '.join(log)})")
    assert tried >= 10

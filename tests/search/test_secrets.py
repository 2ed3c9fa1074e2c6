"""A storage password never reaches a file of the run directory, a report, stdout or stderr.

Runs the INSTALLED ``compress`` console script (a subprocess with PYTHONPATH set to this checkout), as a
user would, with a password in ``--storage`` in every form a URL can carry it: after a user, after an empty
user, with an unencoded ``@`` inside, in the query string, and from the ``COMPRESS_STORAGE`` variable. The
PostgreSQL URLs point at a closed port (they fail fast, and the password must not appear even in the error);
the SQLite URL with ``?password=`` runs a whole tiny search and its reports.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from search.redaction import normalize_url, redact, redact_argv, redact_text

ROOT = Path(__file__).resolve().parents[2]
SPACE = "resolutions: [96]\nwidths: [0.35]\ndepths: [1]\nkernels: [3]\nexpands: [3]\nprune: [0.0]\nquant: [fp16]\n"


def _compress() -> str:
    exe = shutil.which("compress") or str(Path(sys.executable).with_name("compress"))
    if not Path(exe).is_file():
        pytest.skip("the compress console script is not installed (pip install -e .)")
    return exe


def _run(args: list[str], tmp_path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        **(env or {}),
    }
    full_env.pop("COMPRESS_DEBUG", None)
    if env is None:
        full_env.pop("COMPRESS_STORAGE", None)
    return subprocess.run(
        [_compress(), *args], capture_output=True, text=True, env=full_env, timeout=600, cwd=tmp_path
    )


def _leaks(secret: str, *texts: str, folder: Path | None = None) -> list[str]:
    """Where ``secret`` (or any 4+ character piece of it between '@'s) shows up."""
    pieces = {secret, *(p for p in secret.split("@") if len(p) >= 4)}
    found = [f"output {i}" for i, t in enumerate(texts) for p in pieces if p in t]
    if folder is not None and folder.exists():
        for path in folder.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                found += [str(path) for p in pieces if p.encode() in data]
    return found


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("postgresql://alice:Pw0rdArgv9@127.0.0.1:1/optuna", "Pw0rdArgv9"),
        ("postgresql://:Pw0rdEmpty9@127.0.0.1:1/optuna", "Pw0rdEmpty9"),
        ("postgresql://alice:Pw0rd@Inside9@127.0.0.1:1/optuna", "Pw0rd@Inside9"),
        ("postgresql://alice@127.0.0.1:1/optuna?password=Pw0rdQuery9", "Pw0rdQuery9"),
        ("postgresql://alice:Pw%40rdEnc9@127.0.0.1:1/optuna", "Pw@rdEnc9"),
    ],
)
@pytest.mark.slow
@pytest.mark.parametrize("where", ["argv", "env"])
def test_unreachable_storage_error_hides_the_password(tmp_path, url, secret, where):
    out = tmp_path / "run"
    if where == "argv":
        got = _run(["search", "--storage", url, "--out", str(out)], tmp_path)
    else:
        got = _run(["search", "--out", str(out)], tmp_path, env={"COMPRESS_STORAGE": url})
    assert got.returncode != 0
    assert got.stderr.startswith("compress: error: cannot open the storage postgresql://"), got.stderr
    assert "Traceback" not in got.stderr and got.stderr.count("\n") == 1, got.stderr
    assert not _leaks(secret, got.stdout, got.stderr, folder=tmp_path), got.stderr
    if "%40" in url:
        assert not _leaks("Pw%40rdEnc9", got.stdout, got.stderr, folder=tmp_path)


@pytest.mark.slow
def test_whole_run_and_reports_hide_the_password(tmp_path):
    from compress.data import SceneConfig, generate_scenes

    data = generate_scenes(
        tmp_path / "coco", SceneConfig(num_train=24, num_val=8, image_size=64), progress=False
    )
    (tmp_path / "space.yaml").write_text(SPACE)
    out = tmp_path / "run"
    secret = "Pw0rdSqlite9"
    url = f"sqlite:///{out / 'study.db'}?password={secret}"
    small = ["--trials", "2", "--train-steps", "1", "--finetune-steps", "1", "--eval-images", "8"]
    common = ["--data", f"coco:{data}", "--space", str(tmp_path / "space.yaml"), "--out", str(out)]
    search = _run(["search", "--storage", url, *small, *common, "--no-progress"], tmp_path)
    assert search.returncode == 0, search.stderr[-2000:]
    html = _run(["report", str(out)], tmp_path)
    md = _run(["report", str(out), "--format", "md"], tmp_path)
    assert html.returncode == 0 and md.returncode == 0, html.stderr + md.stderr
    assert (out / "report.html").is_file() and (out / "report.md").is_file()
    assert "password=***" in (out / "run.json").read_text()  # the command line is there, redacted
    texts = [p.stdout + p.stderr for p in (search, html, md)]
    assert not _leaks(secret, *texts, folder=out)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:pw@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://:pw@h/db", "postgresql://:***@h/db"),
        ("postgresql://u:p@ss@h/db", "postgresql://u:***@h/db"),
        (
            "postgresql://u@h/db?password=pw&sslmode=require",
            "postgresql://u@h/db?password=***&sslmode=require",
        ),
        ("mysql+pymysql://u:p/w@h/db", "mysql+pymysql://u:***@h/db"),
        ("sqlite:////tmp/study.db", "sqlite:////tmp/study.db"),
    ],
)
def test_redact(url, shown):
    assert redact(url) == shown


def test_normalize_url_encodes_an_at_in_the_password():
    from sqlalchemy.engine import make_url

    url = make_url(normalize_url("postgresql://u:p@ss:w@h:5432/db"))
    assert (url.username, url.password, url.host, url.port) == ("u", "p@ss:w", "h", 5432)


def test_redact_text_and_argv():
    argv = redact_argv(
        ["search", "--storage=postgresql://u:SecretA1@h/db", "--storage", "mysql://:SecretB2@h/x"]
    )
    assert not any("Secret" in a for a in argv)
    text = 'could not connect: password authentication failed (password "SecretA1")'
    assert "SecretA1" not in redact_text(text)

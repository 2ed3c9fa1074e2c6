"""Taking a run directory's lock clears the temporary files a killed search left: our own atomic writes'
(``.NAME.PID.HEX.tmp``) and safetensors' (``.tmpXXXXXX``, written by its Rust tempfile before the rename)."""

from __future__ import annotations

from search._lock import run_lock


def test_the_lock_clears_temporary_files_of_killed_writes_and_nothing_else(tmp_path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    ours, theirs = run / ".trials.csv.123.ab12cd34.tmp", run / ".tmpDRVIcN"
    kept = [run / "trials.csv", run / ".tmp", run / "supernet.safetensors"]
    for path in (ours, theirs, *kept):
        path.write_text("x")
    with run_lock(run):
        pass
    assert not ours.exists() and not theirs.exists()
    assert all(p.exists() for p in kept)

"""Test helper: one search worker process, as `compress search` runs it, from a pickled ``SearchConfig``.

    python tests/search/search_proc.py CONFIG.pkl

Environment (tests only): ``SEARCH_PROC_GO=FILE`` waits for FILE to exist before searching (so that workers
start together, after their imports); ``SEARCH_PROC_TRIAL_DELAY=S`` sleeps S seconds inside every trial's
scoring (so that a test can kill the process mid-trial). Errors print as one line, like the CLI.
"""

from __future__ import annotations

import os
import pickle
import sys
import time
from pathlib import Path


def main(path: str) -> int:
    import torch

    import search.scorer
    from compress.errors import CompressError
    from search import run_search

    torch.set_num_threads(1)
    cfg = pickle.loads(Path(path).read_bytes())
    delay = float(os.environ.get("SEARCH_PROC_TRIAL_DELAY", "0"))
    if delay:
        score = search.scorer.Scorer.score

        def slow_score(self, candidate, **kwargs):  # type: ignore[no-untyped-def]
            time.sleep(delay)
            return score(self, candidate, **kwargs)

        search.scorer.Scorer.score = slow_score  # type: ignore[method-assign]
    go = os.environ.get("SEARCH_PROC_GO")
    if go:
        Path(go + f".ready{os.getpid()}").touch()
        while not Path(go).exists():
            time.sleep(0.05)
    try:
        run_search(cfg, progress=False)
    except CompressError as exc:
        print(f"compress: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

"""search: the study.

The search space declared as data, the Optuna study (sampler, storage URL, resume, workers), objectives and
constraints, the Pareto front as a pandas DataFrame, and the rule that picks the chosen candidate.
Imports ``compress`` and ``profiles``; never the other way round.
"""

from __future__ import annotations

from search.config import DEFAULT_DEVICES, SearchConfig, SearchResult
from search.run import run_search
from search.space import Candidate, SearchSpace, load_space
from search.units import parse_duration_ms, parse_size_mb

__all__ = [
    "DEFAULT_DEVICES",
    "Candidate",
    "SearchConfig",
    "SearchResult",
    "SearchSpace",
    "load_space",
    "parse_duration_ms",
    "parse_size_mb",
    "run_search",
]

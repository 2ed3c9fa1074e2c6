"""search: the study.

The search space declared as data, the Optuna study (sampler, storage URL, resume, workers), objectives and
constraints, the Pareto front as a pandas DataFrame, and the rule that picks the chosen candidate.
Imports ``compress`` and ``profiles``; never the other way round.
"""

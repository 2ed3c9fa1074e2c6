"""Scoring one candidate: build the static model it describes, measure its quality, cost it on every device.

Build (``Scorer.build``): extract the subnet from the trained supernet → BN recalibration on calibration images
→ structured pruning (Torch-Pruning; BN recalibrated again) → quantization simulated in torch with the math the
Core ML artifact uses. Quality (``compress.evaluate``) is measured on the validation split at the candidate's
own resolution (a fixed, seeded subset during the search; the whole split for the chosen model). Cost
(``profiles``): the graph is extracted once and re-costed on every target device with the candidate's scheme.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch

from compress.data import MultiTaskDataset
from compress.metrics import Quality
from compress.model import MultiTaskNet
from search.space import Candidate

__all__ = ["Score", "Scorer"]

_COST_KEYS = ("latency_ms", "worst_", "disk_mb", "weights_mb", "peak_memory_mb")


@dataclass
class Score:
    """Quality and per-device cost of one candidate."""

    candidate: Candidate
    quality: Quality
    costs: dict[str, Any]
    params: int
    seconds: dict[str, float] = field(default_factory=dict)
    confidence: float | None = None  # the latency bound's level (``latency_ms_bound.<device>``); None: point
    #: the quality model's prediction of the trained quality (``search.quality``); None: scored as inherited
    predicted: float | None = None
    flops: float | None = None
    inherited_fp16: float | None = None  # the same candidate's inherited score without its scheme

    @property
    def value(self) -> float:
        """The quality the search ranks by: the prediction where a quality model is set, else inherited."""
        return self.predicted if self.predicted is not None else self.quality.aggregate

    @property
    def worst_device(self) -> str:
        return max(self.costs, key=lambda d: self.costs[d].latency_ms)

    @property
    def worst_latency_ms(self) -> float:
        return max(c.latency_ms for c in self.costs.values())

    @property
    def worst_memory_mb(self) -> float:
        return max(c.peak_memory_mb for c in self.costs.values())

    @property
    def disk_mb(self) -> float:
        return max(c.disk_mb for c in self.costs.values())

    def row(self) -> dict[str, Any]:
        """The flat record written to trial attributes and CSV files (see the run-directory contract)."""
        row: dict[str, Any] = {
            "quality": self.value,
            "quality_inherited": self.quality.aggregate,
            "worst_latency_ms": self.worst_latency_ms,
            "worst_device": self.worst_device,
            "worst_memory_mb": self.worst_memory_mb,
            "disk_mb": self.disk_mb,
            "weights_mb": max(c.weights_mb for c in self.costs.values()),
            "params": self.params,
        }
        if self.flops is not None:
            row["flops"] = self.flops
        if self.inherited_fp16 is not None:
            row["quality_inherited_fp16"] = self.inherited_fp16
        for device, cost in self.costs.items():
            row[f"latency_ms.{device}"] = cost.latency_ms
            if cost.latency_ms_p10 is not None:
                row[f"latency_ms_p10.{device}"] = cost.latency_ms_p10
                row[f"latency_ms_p90.{device}"] = cost.latency_ms_p90
            if self.confidence is not None:
                row[f"latency_ms_bound.{device}"] = cost.latency_ms_at(self.confidence)
            row[f"peak_memory_mb.{device}"] = cost.peak_memory_mb
        for task, metrics in self.quality.tasks.items():
            for name, value in metrics.items():
                row[f"q.{task}.{name}"] = value
        row["arch"] = self.candidate.spec.describe()
        row["spec"] = self.candidate.spec.to_json()
        row["prune"] = ",".join(f"{r:g}" for r in self.candidate.prune)
        row["quant"] = self.candidate.quant
        return row


class Scorer:
    """Scores candidates against one trained supernet, one data set and a list of devices.

    ``eval_images`` caps the validation images used per trial (seeded subset; None = all);
    ``calib_images`` training images are used for BN recalibration and W8A8 calibration; ``confidence``
    adds each device's latency bound at that level to the scores (``Cost.latency_ms_at``); ``quality_model``
    (``search.quality.QualityModel``, set after the supernet is known) makes ``Score.predicted`` the quality
    the search ranks by.
    """

    def __init__(
        self,
        supernet: Any,
        *,
        data: str,
        devices: list[str],
        eval_images: int | None = 128,
        calib_images: int = 64,
        cache_dir: str | Path | None = None,
        progress: bool = False,
        seed: int = 0,
        confidence: float | None = None,
    ) -> None:
        self.supernet = supernet.eval()
        self.data = data
        self.devices = list(devices)
        self.eval_images = eval_images
        self.calib_images = calib_images
        self.cache_dir = cache_dir
        self.progress = progress
        self.seed = seed
        self.confidence = confidence
        self.quality_model: Any = None
        self._val: dict[int, Any] = {}
        self._calib: dict[int, torch.Tensor] = {}
        # every score made, by (candidate, full_val), with the candidate's FLOPs: scoring is deterministic, so
        # a candidate scored twice (a calibration shape that is also a baseline, a trial the sampler repeats)
        # is evaluated once
        self._scores: dict[tuple[Candidate, bool], tuple[Score, float]] = {}

    # -- data -------------------------------------------------------------------------------------------------
    def _load(self, resolution: int) -> None:
        from compress.data import load_data

        train, val = load_data(
            self.data, resolution=resolution, cache_dir=self.cache_dir, progress=self.progress
        )
        g = torch.Generator().manual_seed(self.seed)
        if self.eval_images is not None and len(val) > self.eval_images:
            val = val.subset(torch.randperm(len(val), generator=g)[: self.eval_images].sort().values)
        idx = torch.randperm(len(train), generator=g)[: self.calib_images].sort().values
        self._val[resolution] = val
        self._calib[resolution] = train.batch(idx)["images"]

    def val(self, resolution: int) -> MultiTaskDataset:
        if resolution not in self._val:
            self._load(resolution)
        return self._val[resolution]

    def calibration(self, resolution: int) -> torch.Tensor:
        if resolution not in self._calib:
            self._load(resolution)
        return self._calib[resolution]

    # -- build, cost, score -------------------------------------------------------------------------------
    def build(self, candidate: Candidate, *, quantize: bool = True) -> MultiTaskNet:
        """The static model ``candidate`` describes (float when ``quantize`` is False)."""
        from compress.compression import PruneSpec, prune, simulate
        from compress.model import extract, recalibrate_bn

        calib = self.calibration(candidate.spec.resolution)
        model: torch.nn.Module = extract(self.supernet, candidate.spec)
        if any(candidate.prune):  # magnitude importance reads weights only; prune() recalibrates BN after
            model = prune(model, PruneSpec(candidate.prune), calibration=calib)
        else:
            recalibrate_bn(model, calib)
        model.eval()
        if quantize:
            model = simulate(model, candidate.quant, calibration=calib).eval()
        return cast(MultiTaskNet, model)  # extract builds one; pruning and simulation keep its class

    def cost(self, model: MultiTaskNet, quant: str) -> dict[str, Any]:
        """``profiles.Cost`` on every device (one graph extraction)."""
        return self._cost(model, quant)[0]

    def _cost(self, model: MultiTaskNet, quant: str) -> tuple[dict[str, Any], float]:
        """``cost`` and the model's FLOPs, from one graph extraction."""
        from profiles import estimate_graph, extract_graph

        res = model.spec.resolution
        graph = extract_graph(model, (1, 3, res, res))
        return {d: estimate_graph(graph, d, quant=quant) for d in self.devices}, graph.flops

    def cost_row(self, candidate: Candidate) -> dict[str, Any]:
        """The cost columns of ``candidate``'s row (``Score.row``: latency, interval, bound, memory, disk) from
        its structure alone: a fresh network of the pruned architecture, no weights, no evaluation (tens of
        milliseconds, where scoring takes seconds). Pruning keeps what ``pruned_spec`` says it keeps, so the
        graph, and every cost, is the scored candidate's."""
        from compress.compression.pruning import PruneSpec, pruned_spec
        from compress.model import extract

        arch = candidate.spec
        if any(candidate.prune):
            arch = pruned_spec(extract(self.supernet, arch), PruneSpec(candidate.prune))
        model = MultiTaskNet(arch).eval()
        costs = self._cost(model, candidate.quant)[0]
        row = Score(candidate, Quality({}), costs, 0, confidence=self.confidence).row()
        return {k: v for k, v in row.items() if k.startswith(_COST_KEYS)}

    def score(self, candidate: Candidate, *, full_val: bool = False) -> Score:
        """Build, evaluate and cost ``candidate`` (once: a candidate scored before is not evaluated again; its
        ``seconds`` then say ``{"cached": 0.0}``)."""
        key = (candidate, full_val)
        if key in self._scores:
            first, flops = self._scores[key]
            score = dataclasses.replace(first, seconds={"cached": 0.0}, predicted=None)
            if self.quality_model is not None:
                float_model = None if candidate.quant == "fp16" else self.build(candidate, quantize=False)
                self._predict(score, float_model, self._val_for(candidate, full_val), flops)
            return score
        score, flops = self._score(candidate, full_val)
        self._scores[key] = (score, flops)
        return score

    def _val_for(self, candidate: Candidate, full_val: bool) -> MultiTaskDataset:
        res = candidate.spec.resolution
        return self.full_val(res) if full_val else self.val(res)

    def _score(self, candidate: Candidate, full_val: bool) -> tuple[Score, float]:
        from compress.compression import simulate
        from compress.evaluate import evaluate
        from compress.model import count_parameters

        times: dict[str, float] = {}
        t0 = time.perf_counter()
        float_model = self.build(candidate, quantize=False)
        times["build"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        costs, flops = self._cost(float_model, candidate.quant)
        times["cost"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        model = simulate(
            float_model, candidate.quant, calibration=self.calibration(candidate.spec.resolution)
        ).eval()
        times["quantize"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        val = self._val_for(candidate, full_val)
        quality = evaluate(model, val)
        times["evaluate"] = time.perf_counter() - t0
        score = Score(candidate, quality, costs, count_parameters(float_model), times, self.confidence)
        if self.quality_model is not None:
            t0 = time.perf_counter()
            self._predict(score, float_model, val, flops)
            times["predict"] = time.perf_counter() - t0
        return score, flops

    def _predict(
        self, score: Score, float_model: MultiTaskNet | None, val: MultiTaskDataset, flops: float
    ) -> None:
        """Set ``score.predicted``: the quality model on the candidate's FLOPs, its fp16 inherited score and
        its scheme's inherited score (the fp16 score needs one more evaluation for a compressed scheme)."""
        from compress.compression import simulate
        from compress.evaluate import evaluate

        inherited = score.quality.aggregate
        if score.candidate.quant == "fp16":
            fp16 = score.quality
        else:
            assert float_model is not None, "a compressed scheme's fp16 score needs its float model"
            calib = self.calibration(score.candidate.spec.resolution)
            fp16 = evaluate(simulate(float_model, "fp16", calibration=calib).eval(), val)
        score.flops = flops
        score.inherited_fp16 = fp16.aggregate
        score.predicted = self.quality_model.predict(flops, fp16.aggregate, inherited, fp16.task_scores())

    def full_val(self, resolution: int) -> MultiTaskDataset:
        from compress.data import load_data

        return load_data(self.data, resolution=resolution, cache_dir=self.cache_dir, progress=self.progress)[
            1
        ]

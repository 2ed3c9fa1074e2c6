"""The chosen candidate, made deployable: fine-tuned briefly, compressed, exported, and described in a card.

Steps: rebuild the candidate from the supernet (extract → BN recalibration → pruning) → fine-tune the float
model for ``finetune_steps`` steps on the training split at the candidate's resolution (AdamW, cosine, the same
multi-task loss) → BN recalibration → the candidate's quantization scheme, simulated → quality on the *whole*
validation split. The fine-tuned weights are kept only when they score at least as well on that split as the
weights straight from the supernet (both figures are in the card). Then ``model.pt``, ``model.mlpackage``
(coremltools applies the same scheme), ``model.onnx`` (the simulated weights), ``layers.csv`` and
``card.json``. An export step that fails is recorded in the card with its reason; nothing else is lost.
"""

from __future__ import annotations

import dataclasses
import json
import math
import traceback
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from search.space import Candidate

__all__ = ["finalize", "finetune"]


def finetune(
    model: torch.nn.Module, train: Any, *, steps: int, batch_size: int = 32, lr: float = 1e-3, seed: int = 0
) -> torch.nn.Module:
    """A short supervised fine-tune of a static multi-task model (in place; returns it in eval mode)."""
    from compress.model import multitask_loss

    if steps <= 0:
        return model.eval()
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    model.train()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = 0.5 * lr * (1 + math.cos(math.pi * step / steps))
        idx = torch.randint(len(train), (batch_size,), generator=g)
        batch = train.batch(idx)
        loss = multitask_loss(model(batch["images"]), batch)["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval()


def _head_name(output: str) -> str:
    """The task a cost group belongs to: the profiles' output groups are output names joined by '+'."""
    from compress.model import HEAD_OUTPUTS

    if output == "shared":
        return "backbone"
    tasks = {t for part in output.split("+") for t, keys in HEAD_OUTPUTS.items() if part in keys}
    return tasks.pop() if len(tasks) == 1 else f"backbone ({'+'.join(sorted(tasks))})"


def _per_head(cost: Any) -> dict[str, Any]:
    """Own cost of each head (and of the shared backbone) on ``cost.device``."""
    heads: dict[str, Any] = {}
    for name, r in cost.by_output().iterrows():
        h = heads.setdefault(_head_name(str(name)), {"params": 0, "weights_mb": 0.0, "latency_ms": 0.0})
        h["params"] += int(r["params"])
        h["weights_mb"] += float(r["weights_mb"])
        h["latency_ms"] += float(r["ms"])
    for h in heads.values():
        h["device"] = cost.device
    return heads


def _safe(step: str, fn: Any, errors: dict[str, str]) -> Any:
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - recorded in card.json, the run goes on
        errors[step] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
        errors[f"{step}.trace"] = traceback.format_exc(limit=4)[-1200:]
        return None


def finalize(
    cfg: Any, cand: Candidate, trial: int, scorer: Any, baselines: pd.DataFrame, *, progress: bool = True
) -> dict[str, Any]:
    """Fine-tune, compress and export ``cand`` into ``RUN/chosen/``; return the card (also written)."""
    import copy

    from compress.compression import simulate
    from compress.data import load_data
    from compress.evaluate import evaluate
    from compress.export import export_coreml, export_onnx, package_size_mb
    from compress.model import count_parameters, recalibrate_bn, save_model
    from search.run import _write_json

    out = Path(cfg.run_dir) / "chosen"
    out.mkdir(parents=True, exist_ok=True)
    res = cand.spec.resolution
    say = print if progress else (lambda *a, **k: None)
    say(f"finalizing trial {trial}: {cand.describe()}")
    train, val = load_data(cfg.data, resolution=res, cache_dir=cfg.cache_dir, progress=progress)
    calib = scorer.calibration(res)
    base = scorer.build(cand, quantize=False)
    q_before = evaluate(simulate(base, cand.quant, calibration=calib).eval(), val)
    tuned = finetune(copy.deepcopy(base), train, steps=cfg.finetune_steps, seed=cfg.seed)
    recalibrate_bn(tuned, calib)
    q_after = evaluate(simulate(tuned, cand.quant, calibration=calib).eval(), val)
    kept_finetune = q_after.aggregate >= q_before.aggregate
    model = tuned if kept_finetune else base
    quality = q_after if kept_finetune else q_before
    simulated = simulate(model, cand.quant, calibration=calib).eval()
    costs = scorer.cost(model, cand.quant)
    slowest = max(costs, key=lambda d: costs[d].latency_ms)

    errors: dict[str, str] = {}
    save_model(model, out / "model.pt")
    meta = {
        "trial": str(trial),
        "quant": cand.quant,
        "budget_ms": str(cfg.budget_ms),
        "predicted_latency_ms": json.dumps({d: round(c.latency_ms, 3) for d, c in costs.items()}),
    }
    say("exporting Core ML and ONNX")
    ml = _safe(
        "model.mlpackage",
        lambda: export_coreml(
            model, out / "model.mlpackage", scheme=cand.quant, metadata=meta, calibration=calib
        ),
        errors,
    )
    onnx = _safe("model.onnx", lambda: export_onnx(simulated, out / "model.onnx"), errors)
    layers = costs[slowest].layers.copy()
    layers["head"] = [_head_name(str(o)) for o in layers["output"]]
    layers.to_csv(out / "layers.csv", index=False)

    predicted_disk = costs[slowest].disk_mb
    artifacts = {}
    for name, path in (("model.mlpackage", ml), ("model.onnx", onnx), ("model.pt", out / "model.pt")):
        if path is not None:
            artifacts[name] = {
                "disk_mb_actual": package_size_mb(path),
                "disk_mb_predicted": predicted_disk if name == "model.mlpackage" else None,
            }
    feasible_base = baselines[baselines["feasible"]] if "feasible" in baselines else baselines.iloc[0:0]
    best_base = None
    if not feasible_base.empty:
        b = feasible_base.sort_values(["quality", "worst_latency_ms"], ascending=[False, True]).iloc[0]
        from compress.model import ArchSpec

        rescored = scorer.score(
            Candidate(
                ArchSpec.from_json(b["spec"]),
                tuple(float(x) for x in str(b["prune"]).split(",")),
                str(b["quant"]),
            ),
            full_val=True,
        )
        best_base = {
            "name": b["name"],
            "quality": rescored.quality.aggregate,
            "quality_search_subset": float(b["quality"]),
            "worst_latency_ms": float(b["worst_latency_ms"]),
        }
    compression = []
    for scheme in dict.fromkeys([cand.quant, *scorer_schemes(cfg)]):
        sim = _safe(
            f"compression.{scheme}", lambda s=scheme: simulate(model, s, calibration=calib).eval(), errors
        )
        if sim is None:
            continue
        c = scorer.cost(model, scheme)[slowest]
        compression.append(
            {
                "scheme": scheme,
                "prune": round(sum(cand.prune) / len(cand.prune), 3),  # mean per-stage ratio
                "prune_ratios": list(cand.prune),
                "params": count_parameters(model),
                "disk_mb": c.disk_mb,
                "weights_mb": c.weights_mb,
                "latency_ms": c.latency_ms,
                "quality": evaluate(sim, val).aggregate,
            }
        )
    card = {
        "trial": trial,
        "arch": cand.spec.describe(),
        "spec": cand.spec.to_dict(),
        "prune": {"ratios": list(cand.prune)},
        "quant": cand.quant,
        "quality": quality.to_dict(),
        "quality_before_finetune": q_before.to_dict(),
        "finetune": {
            "steps": cfg.finetune_steps,
            "kept": kept_finetune,
            "quality_after_finetune": q_after.aggregate,
        },
        "budget_ms": cfg.budget_ms,
        "slowest_device": slowest,
        "params": count_parameters(model),
        "devices": {
            d: {
                "latency_ms": c.latency_ms,
                "peak_memory_mb": c.peak_memory_mb,
                "disk_mb": c.disk_mb,
                "weights_mb": c.weights_mb,
                "source": c.source,
                "error_pct": c.calibration_error_pct,
                "units": list(c.units),
                "within_budget": c.latency_ms <= cfg.budget_ms,
            }
            for d, c in costs.items()
        },
        "heads": _per_head(costs[slowest]),
        "artifacts": artifacts,
        "baseline": best_base,
        # like for like: the baselines are not fine-tuned, so compare the chosen model before its fine-tune
        "beats_baseline": None if best_base is None else q_before.aggregate >= best_base["quality"],
        "compression": compression,
        "errors": errors,
    }
    from compress.pretrain import backbone_card

    # Pruning keeps no channel prefix the image projection could follow: zero-shot tagging is measured on the
    # chosen architecture as the supernet holds it (unpruned, float), beside that model's own tagging head.
    unpruned = dataclasses.replace(cand, prune=tuple(0.0 for _ in cand.prune))
    pretrained = bool(getattr(cfg, "pretrain", False))
    backbone = _safe(
        "backbone",
        lambda: backbone_card(
            cfg.run_dir,
            scorer.build(unpruned, quantize=False) if pretrained else None,
            val,
            init=getattr(cfg, "init", None),
            pretrained=pretrained,
        ),
        errors,
    )
    if backbone is not None:
        card["backbone"] = backbone
    _write_json(out / "card.json", card)
    return card


def scorer_schemes(cfg: Any) -> list[str]:
    from search.space import load_space

    return list(load_space(cfg.space_file).quant)

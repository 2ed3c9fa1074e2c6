"""Pretraining the elastic backbone, then its heads on the frozen backbone (ANSA), and zero-shot tagging.

``pretrain_backbone`` trains the supernet's stem and stages with one of two objectives, sandwich-sampled like
the supernet recipe (each step: the largest, the smallest and ``num_random`` random subnets, each at its own
resolution), so every subnet learns the same embedding:

* ``"contrastive"`` (CLIP-style): the image embedding (global average pool of the stage the tagging head
  branches from, an ``ImageProjection``, unit norm) against the embedding of one of the image's captions
  (``compress.text.TextEncoder``: a word vocabulary of the training captions, ``TextConfig.layers``
  transformer layers), with the symmetric InfoNCE loss (cross-entropy both ways over the batch's cosine
  similarities times a learned ``1 / temperature``). Needs captions (``MultiTaskDataset.captions``).
* ``"tags"``: multi-label classification of the image's tags (BCE) from the same pooled features through a
  linear layer: the conventional pretraining ANSA moved away from; ``benchmarks/pretraining.py`` compares both.

``start_supernet`` runs the optional starts before ``compress.training.train_supernet``: ``init`` copies
MobileNetV3-Large weights in (``compress.model.mnv3_weights``); ``pretrain`` then pretrains the backbone and
the supernet recipe continues with its head phase only (``joint_fraction=0``: the backbone frozen, every
head at every branch point), so the total steps stay the recipe's (the pretraining takes the joint phase's
share). The supernet's config hash includes both starts, so a run never reuses weights trained otherwise.

Run directory (beside ``supernet.safetensors``): ``pretrained.safetensors`` (the pretrained supernet, reused when its
hash matches), and for the contrastive objective ``text_encoder.safetensors`` + ``text_encoder.json``
(vocabulary, sizes, prompt). Under ``torchrun`` each rank takes its shard of every batch (the InfoNCE
negatives are the rank's own) and gradients are all-reduced as in ``train_supernet``; AMP on a GPU with
``amp=True``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from compress.errors import ConfigError, DataError, RunError
from compress.text import PROMPT, ImageText, TextConfig, Vocabulary, load_image_text, save_image_text

__all__ = [
    "OBJECTIVES",
    "backbone_card",
    "PretrainConfig",
    "PretrainResult",
    "embed_stage",
    "joint_phase_pretraining",
    "pretrain",
    "pretrain_backbone",
    "prompt_embeddings",
    "save_prompt_embeddings",
    "start_supernet",
    "with_image_embedding",
    "zero_shot_scores",
]

OBJECTIVES = ("contrastive", "tags")
FORMAT = "compress.PretrainedSupernet/1"
TEXT_EMBEDDINGS = "text_embeddings.safetensors"
TEXT_NAMES = "text_embeddings.json"
TEXT_FORMAT = "compress.TextEmbeddings/1"


@dataclass(frozen=True)
class PretrainConfig:
    """Backbone pretraining recipe (sandwich-sampled; AdamW, cosine schedule with warm-up)."""

    objective: str = "contrastive"
    steps: int = 150
    batch_size: int = 24
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 20
    num_random: int = 1
    resolution: int = 160
    seed: int = 0
    text: TextConfig = field(default_factory=TextConfig)
    amp: bool = False
    grad_checkpoint: bool = False

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ConfigError(
                f"unknown pretraining objective {self.objective!r}; choose one of: {', '.join(OBJECTIVES)}"
            )
        if self.steps < 1:
            raise ConfigError(f"pretraining steps must be >= 1, but got {self.steps}")
        if self.batch_size < 2:
            raise ConfigError(f"pretraining batch_size must be >= 2, but got {self.batch_size}")
        if not 0 < self.lr < 1:
            raise ConfigError(f"pretraining lr must lie in (0, 1), but got {self.lr}")
        if not 32 <= self.resolution <= 1024:
            raise ConfigError(f"pretraining resolution must lie in [32, 1024], but got {self.resolution}")
        if self.num_random < 0:
            raise ConfigError(f"num_random must be >= 0, but got {self.num_random}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class PretrainResult:
    """The pretrained supernet, its image-text model (contrastive only), hash, whether reused, and history."""

    supernet: Any
    image_text: Any
    key: str
    reused: bool
    seconds: float
    history: list[dict[str, float]]


def embed_stage(spec: Any) -> int:
    """The backbone stage a spec's image embedding reads: its tagging head's branch, else its last stage."""
    for h in spec.heads:
        if h.task == "tagging":
            return int(h.branch)
    return spec.built_stages - 1


def _embed_widths(space: Any) -> dict[int, int]:
    stages = [b for h in space.heads if h.task == "tagging" for b in h.branches] or [len(space.stages) - 1]
    return {b: max(space.stages[b].widths) for b in sorted(stages)}


class TagProbe(nn.Module):
    """Pooled stage features [B, C] (any prefix of the widest) -> tag logits, one linear layer per stage."""

    def __init__(self, widths: dict[int, int], num_classes: int) -> None:
        super().__init__()
        self.linear = nn.ModuleDict({str(s): nn.Linear(w, num_classes) for s, w in widths.items()})

    def forward(self, features: torch.Tensor, stage: int) -> torch.Tensor:
        pooled = features.float().mean(dim=(2, 3))
        layer = self.linear[str(stage)]
        return F.linear(pooled, layer.weight[:, : pooled.shape[1]], layer.bias)


def _key(space: Any, data_key: str, config: PretrainConfig) -> str:
    recipe = {k: v for k, v in config.to_dict().items() if k not in ("amp", "grad_checkpoint")}
    blob = json.dumps(
        {"format": FORMAT, "space": space.to_dict(), "data": data_key, "recipe": recipe}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _captions(data: Any) -> list[list[str]]:
    caps = getattr(data, "captions", None)
    if caps is None or not any(caps):
        raise DataError(
            "contrastive pretraining needs captions, but the data set has none; add COCO caption files "
            "(annotations/captions_train.json) or use --objective tags"
        )
    return caps


def infonce(image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE over a batch of matching unit-norm embeddings (row i of each is a pair)."""
    logits = scale * image @ text.t()
    target = torch.arange(len(image), device=image.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def _load_pretrained(path: Path, net: Any, key: str) -> list[dict[str, float]] | None:
    from safetensors import safe_open
    from safetensors.torch import load_file

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if meta.get("format") != FORMAT or meta.get("key") != key:
            return None
        net.load_state_dict(load_file(str(path)))
        return json.loads(meta.get("history", "[]"))
    except Exception:  # a truncated or foreign file: pretrain again
        return None


def _save_pretrained(path: Path, net: Any, key: str, config: PretrainConfig, history: list) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    meta = {
        "format": FORMAT,
        "key": key,
        "config": json.dumps(config.to_dict()),
        "history": json.dumps(history),
    }
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp), metadata=meta)
    os.replace(tmp, path)


def pretrain_backbone(
    space: Any,
    train_data: Any,
    out_dir: str | Path,
    *,
    config: PretrainConfig = PretrainConfig(),
    data_key: str = "",
    supernet: Any = None,
    progress: bool = True,
) -> PretrainResult:
    """Pretrain the backbone of ``supernet`` (default: a new ``Supernet(space)``) and save it in ``out_dir``.

    Reuses ``out_dir/pretrained.safetensors`` (and the text encoder) when its hash (space, data, recipe,
    start) matches.
    """
    from compress.model import Supernet
    from compress.training import check_batch, dist_world, place

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    key = _key(space, data_key, config)
    torch.manual_seed(config.seed)
    net = supernet if supernet is not None else Supernet(space)
    captions = _captions(train_data) if config.objective == "contrastive" else None
    widths = _embed_widths(space)
    path = out_dir / "pretrained.safetensors"
    history = _load_pretrained(path, net, key)
    if history is not None and (captions is None or (out_dir / "text_encoder.json").is_file()):
        image_text = load_image_text(out_dir) if captions is not None else None
        return PretrainResult(net.eval(), image_text, key, True, 0.0, history)

    rank, world = dist_world()
    check_batch(len(train_data), config.batch_size, world, what="pretraining batch size")
    aux = _objective_module(captions, config, widths, space.num_classes)
    device = place(net, world, amp=config.amp, grad_checkpoint=config.grad_checkpoint)
    aux.to(device)
    history, seconds = _pretrain_steps(
        net,
        aux,
        space,
        train_data,
        captions,
        config,
        device=device,
        rank=rank,
        world=world,
        progress=progress,
    )
    net.cpu().eval()
    aux.cpu().eval()
    if rank == 0:
        if isinstance(aux, ImageText):
            save_image_text(aux, out_dir, {"objective": config.objective, "key": key})
        _save_pretrained(path, net, key, config, history)
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
    return PretrainResult(net, aux if isinstance(aux, ImageText) else None, key, False, seconds, history)


def _objective_module(
    captions: list[list[str]] | None, config: PretrainConfig, widths: dict[int, int], num_classes: int
) -> nn.Module:
    """What trains beside the backbone: the image-text model (with captions) or the tag probe."""
    if captions is not None:
        return ImageText(Vocabulary.build(c for cs in captions for c in cs), config.text, widths)
    return TagProbe(widths, num_classes)


def _pretrain_steps(
    net: Any,
    aux: nn.Module,
    space: Any,
    train_data: Any,
    captions: list[list[str]] | None,
    config: PretrainConfig,
    *,
    device: torch.device,
    rank: int,
    world: int,
    progress: bool,
) -> tuple[list[dict[str, float]], float]:
    """The training loop of ``pretrain_backbone``: its history (one dict per step) and its seconds.

    Each step draws a batch (this rank's shard), a caption per image (contrastive), the sandwich of subnets,
    then adds every subnet's gradient (:func:`_sandwich_backward`) and takes one optimizer step.
    """
    from compress.progress import track
    from compress.training import allreduce_grads, batch_indices, lr_at

    backbone = [p for n, p in net.named_parameters() if not n.startswith("heads")]
    params = backbone + list(aux.parameters())
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    sample_rng, text_rng = random.Random(config.seed), random.Random(config.seed + 1)
    batches = batch_indices(len(train_data), config.batch_size, torch.Generator().manual_seed(config.seed))
    shard = slice(rank * config.batch_size // world, (rank + 1) * config.batch_size // world)
    autocast = torch.autocast(device.type, enabled=config.amp and device.type == "cuda")
    history, start = [], time.perf_counter()
    net.train()
    aux.train()
    steps = track(range(config.steps), total=config.steps, description=f"pretrain ({config.objective})",
                  enabled=progress and rank == 0)  # fmt: skip
    for step in steps:
        idx = next(batches)
        batch = {k: v[shard].to(device) for k, v in train_data.batch(idx).items()}
        texts = None
        if captions is not None:
            picked = idx[shard].tolist()
            texts = [text_rng.choice(captions[i]) if captions[i] else "" for i in picked]
        specs = [space.largest(), space.smallest()] + [
            space.sample(sample_rng) for _ in range(config.num_random)
        ]
        for g in optimizer.param_groups:
            g["lr"] = lr_at(step, config, config.steps)  # type: ignore[arg-type]
        optimizer.zero_grad(set_to_none=True)
        logs = _sandwich_backward(net, aux, batch, texts, specs, config, autocast)
        allreduce_grads(params, world)
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        optimizer.step()
        if isinstance(aux, ImageText):
            logs["temperature"] = float(1.0 / aux.scale().detach())
        history.append({"step": step + 1, **logs})
    return history, time.perf_counter() - start


def _sandwich_backward(
    net: Any,
    aux: nn.Module,
    batch: dict[str, torch.Tensor],
    texts: list[str] | None,
    specs: list[Any],
    config: PretrainConfig,
    autocast: Any,
) -> dict[str, float]:
    """Backpropagate every subnet's loss on ``batch``; returns the largest and smallest subnets' losses.

    The captions (``texts``; None for the tags objective) are encoded once: every subnet's InfoNCE loss adds
    to the gradient of one detached leaf, which then flows through the text encoder in one backward.
    """
    from compress.training import resize_batch

    logs: dict[str, float] = {}
    text_emb = text_leaf = None
    if texts is not None:  # the captions are encoded once per step; every subnet's loss adds to one grad
        with autocast:
            text_emb = aux.embed_text(texts)  # type: ignore[operator]
        text_leaf = text_emb.detach().requires_grad_()
    for i, spec in enumerate(specs):
        b = resize_batch(batch, min(spec.resolution, config.resolution))
        stage = embed_stage(spec)
        with autocast:
            features = net.features(b["images"], spec, stages=stage + 1)[stage]
            if text_leaf is not None:
                assert isinstance(aux, ImageText)
                loss = infonce(aux.embed_image(features, stage), text_leaf, aux.scale())
            else:
                loss = F.binary_cross_entropy_with_logits(aux(features, stage), b["tags"])
        loss.backward()
        if i < 2:
            logs["loss_largest" if i == 0 else "loss_smallest"] = float(loss.detach())
    if text_emb is not None and text_leaf is not None and text_leaf.grad is not None:
        text_emb.backward(text_leaf.grad)  # one backward through the text encoder for the whole sandwich
    return logs


def joint_phase_pretraining(config: Any, objective: str = "contrastive") -> PretrainConfig:
    """The pretraining that takes the place of the supernet recipe ``config``'s joint phase (same steps)."""
    steps = max(1, int(round(config.steps * config.joint_fraction)))
    return PretrainConfig(objective=objective, steps=steps, batch_size=config.batch_size, lr=config.lr,
                          resolution=config.resolution, seed=config.seed, amp=config.amp)  # fmt: skip


def heads_only(config: Any, steps: int) -> Any:
    """The supernet recipe ``config`` with ``steps`` steps, all in its head phase (backbone frozen)."""
    warmup = min(config.warmup_steps, max(1, steps // 5))
    return dataclasses.replace(config, steps=steps, joint_fraction=0.0, warmup_steps=warmup)


def start_supernet(
    space: Any,
    train_data: Any,
    out: str | Path,
    *,
    config: Any,
    data_key: str,
    init: str | Path | None = None,
    pretrain: PretrainConfig | None = None,
    progress: bool = True,
    time_limit_s: float | None = None,
) -> Any:
    """``train_supernet`` after the optional starts (``init`` weights, then ``pretrain``); see the module doc.
    ``time_limit_s`` limits the supernet's own training (not the pretraining), as ``train_supernet`` says.

    With ``pretrain`` the supernet recipe keeps ``config.steps - pretrain.steps`` head-phase steps (at least 1).
    Without either start this is exactly ``train_supernet(space, train_data, out, config=config, ...)``.
    """
    from compress.model import Supernet
    from compress.training import train_supernet

    out = Path(out)
    began = time.monotonic()
    supernet = None
    if init is not None or pretrain is not None:
        torch.manual_seed(config.seed)
        supernet = Supernet(space)
    if init is not None:
        from compress.model.mnv3_weights import load_mobilenetv3_weights

        data_key += f"+init:{load_mobilenetv3_weights(supernet, init).digest}"
    if pretrain is not None:
        done = pretrain_backbone(
            space,
            train_data,
            out.parent,
            config=pretrain,
            data_key=data_key,
            supernet=supernet,
            progress=progress,
        )
        supernet, data_key = done.supernet, f"{data_key}+pretrain:{done.key}"
        config = heads_only(config, max(1, config.steps - pretrain.steps))
    if time_limit_s is not None:  # the pretraining's minutes came out of the same limit
        time_limit_s -= time.monotonic() - began
    return train_supernet(
        space, train_data, out, config=config, data_key=data_key, progress=progress, supernet=supernet,
        time_limit_s=time_limit_s,
    )  # fmt: skip


@torch.no_grad()
def _stage_output(model: Any, x: torch.Tensor, stage: int, spec: Any = None) -> torch.Tensor:
    if spec is not None:  # a Supernet
        return model.features(x, spec, stages=stage + 1)[stage]
    seen: dict[str, torch.Tensor] = {}
    hook = model.stages[stage].register_forward_hook(lambda _m, _i, out: seen.__setitem__("x", out))
    try:
        model(x)
    finally:
        hook.remove()
    return seen["x"]


@torch.no_grad()
def zero_shot_scores(
    model: Any,
    image_text: ImageText,
    data: Any,
    *,
    spec: Any = None,
    categories: Sequence[str] | None = None,
    prompt: str = PROMPT,
    batch_size: int = 100,
) -> np.ndarray:
    """Cosine similarity [N, C] of each image to the prompt of each category: tags from text alone.

    ``model``: a ``MultiTaskNet`` (its spec decides the stage and resolution) or a ``Supernet`` with ``spec``.
    Score with ``compress.metrics.tagging_map(scores, data.tags.numpy())``.
    """
    arch = spec if spec is not None else model.spec
    stage = embed_stage(arch)
    _check_projection(image_text, stage)
    names = list(categories if categories is not None else data.categories)
    text = prompt_embeddings(image_text, names, prompt=prompt)
    was_training = model.training
    model.eval()
    scores = []
    try:
        for begin in range(0, len(data), batch_size):
            images = data.batch(torch.arange(begin, min(begin + batch_size, len(data))))["images"]
            if arch.resolution != images.shape[-1]:
                images = F.interpolate(
                    images, size=(arch.resolution,) * 2, mode="bilinear", align_corners=False
                )
            features = _stage_output(model, images, stage, spec)
            scores.append((image_text.embed_image(features, stage) @ text.t()).numpy())
    finally:
        model.train(was_training)
    return np.concatenate(scores)


def _check_projection(image_text: ImageText, stage: int) -> None:
    if str(stage) not in image_text.image:
        raise ConfigError(
            f"the text encoder has no image projection for stage {stage}; it has {list(image_text.image)}"
        )


def with_image_embedding(model: Any, image_text: ImageText) -> Any:
    """A copy of the static ``model`` (a ``MultiTaskNet``) with the ``image_embedding`` output attached.

    The output is what ``image_text.embed_image`` computes for ``model``: the global average pool of its
    embed stage (:func:`embed_stage`), the stage's image projection restricted to the model's width there,
    L2 normalisation. Pruning keeps stage outputs, so it applies to pruned models too. ConfigError when the
    text encoder has no projection for that stage or is narrower than the model there.
    """
    import copy

    stage = embed_stage(model.spec)
    _check_projection(image_text, stage)
    weight = image_text.image[str(stage)].linear.weight.detach()
    width = model.spec.stages[stage].width
    if width > weight.shape[1]:
        raise ConfigError(
            f"stage {stage} is {width} channels wide but its image projection takes at most {weight.shape[1]}"
        )
    out = copy.deepcopy(model)
    out.attach_embedding(stage, weight[:, :width].clone())
    return out


@torch.no_grad()
def prompt_embeddings(
    image_text: ImageText, categories: Sequence[str], *, prompt: str = PROMPT
) -> torch.Tensor:
    """The zero-shot classifier [C, D]: the unit-norm embedding of ``prompt`` for each category, in order."""
    was_training = image_text.training
    try:
        return image_text.eval().embed_text([prompt.format(c) for c in categories]).float().cpu()
    finally:
        image_text.train(was_training)


def save_prompt_embeddings(
    image_text: ImageText, categories: Sequence[str], directory: str | Path, *, prompt: str = PROMPT
) -> Path:
    """Write the text side an app needs for zero-shot tagging without the text encoder; return its path.

    ``TEXT_EMBEDDINGS`` (safetensors, tensor ``text`` [C, D], one unit-norm row per category) and
    ``TEXT_NAMES`` (JSON: ``names`` in row order, the ``prompt``, the learned ``temperature``, and how to
    score: ``image_embedding @ text.T`` gives cosine similarities [B, C]).
    """
    from safetensors.torch import save

    from compress.atomic import write_bytes, write_text

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    text = prompt_embeddings(image_text, categories, prompt=prompt).contiguous()
    path = directory / TEXT_EMBEDDINGS
    write_bytes(path, save({"text": text}, metadata={"format": TEXT_FORMAT}))
    write_text(directory / TEXT_NAMES, json.dumps({
        "format": TEXT_FORMAT, "names": [str(c) for c in categories], "prompt": prompt,
        "dim": int(text.shape[1]), "temperature": float(1.0 / image_text.scale().detach()),
        "usage": "scores [B, C] = image_embedding @ text.T (cosine similarities; rows in the order of names)",
    }, indent=1))  # fmt: skip
    return path


def backbone_card(
    run_dir: str | Path, model: Any, data: Any, *, split: str, init: Any = None, pretrained: bool = False
) -> dict:
    """How the backbone was started and pretrained, and (when pretrained on captions) zero-shot tagging.

    ``model``: the chosen static model (float weights); both tagging figures are its mAP on ``data`` (the
    ``split`` named in the card): the trained tagging head's, and the zero-shot one from the prompts and the
    run's text encoder alone.
    """
    from compress.evaluate import evaluate
    from compress.metrics import tagging_map

    card: dict[str, Any] = {
        "init": None if init is None else str(init),
        "pretraining": "none: the backbone trained on the task losses (supernet joint phase)",
    }
    if not pretrained:
        return card
    image_text = load_image_text(run_dir)
    card["pretraining"] = (
        "image-text contrastive (symmetric InfoNCE, learned temperature) on the training captions, "
        "sandwich-sampled; heads then trained on the frozen backbone"
    )
    card["text_encoder"] = "text_encoder.safetensors + text_encoder.json"
    card["prompt"] = PROMPT
    if "tagging" in getattr(model, "branches", {}):
        card["tagging_map_trained_head"] = evaluate(model, data).tasks["tagging"]["map"]
        card["tagging_map_zero_shot"] = tagging_map(
            zero_shot_scores(model, image_text, data), data.tags.numpy()
        )
        card["source"] = (
            f"measured: the chosen architecture unpruned, float weights, {len(data)} {split} images"
        )
    return card


def _check_classes(space: Any, data: Any, spec: str) -> None:
    if space.num_classes != data.num_classes:
        raise ConfigError(
            f"the space has {space.num_classes} classes but the data set {spec!r} has {data.num_classes}"
        )


def pretrain(
    *,
    data: str = "builtin",
    out: str | Path = "runs/pretrain",
    config: PretrainConfig = PretrainConfig(),
    train: Any = None,
    init: str | Path | None = None,
    space: Any = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """``compress pretrain``: pretrain the backbone, train the heads on it frozen, score zero-shot tagging.

    ``train`` is the supernet recipe (``compress.training.TrainConfig``) whose head phase follows; it keeps
    ``train.steps - config.steps`` steps. Writes ``OUT/supernet.safetensors``, ``OUT/pretrained.safetensors``, the
    text encoder and ``OUT/pretrain.json``: the largest subnet's trained tagging mAP on the validation split
    beside its zero-shot tagging mAP from the prompts alone (both after BN recalibration). Returns that dict.
    """
    from compress.data import load_data
    from compress.model import default_space
    from compress.training import SUPERNET_FILE, TrainConfig

    train = train if train is not None else TrainConfig()
    train_data, val = load_data(data, resolution=config.resolution, cache_dir=cache_dir, progress=progress)
    space = space if space is not None else default_space(num_classes=train_data.num_classes)
    _check_classes(space, train_data, data)
    out = Path(out)
    result = start_supernet(
        space, train_data, out / SUPERNET_FILE, config=train, data_key=f"{data}@{config.resolution}",
        init=init, pretrain=config, progress=progress,
    )  # fmt: skip
    summary: dict[str, Any] = {
        "objective": config.objective,
        "pretrain_steps": config.steps,
        "head_steps": max(1, train.steps - config.steps),
        "init": None if init is None else str(init),
    }
    if os.environ.get("RANK", "0") != "0":  # under torchrun rank 0 scores and writes
        return summary
    summary |= _score_largest(result.supernet, space, train_data, val, objective=config.objective, out=out)
    tmp = out / "pretrain.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1, default=float))
    os.replace(tmp, out / "pretrain.json")
    if not (out / SUPERNET_FILE).is_file():
        raise RunError(f"pretraining finished but {out / SUPERNET_FILE} is missing")
    return summary


def _score_largest(
    supernet: Any, space: Any, train_data: Any, val: Any, *, objective: str, out: Path
) -> dict[str, Any]:
    """The scores ``pretrain.json`` holds: the largest subnet's (BN recalibrated) on ``val``.

    Its quality, its trained tagging head's mAP and, for the contrastive objective, its zero-shot tagging mAP
    from the prompts and ``out``'s text encoder alone.
    """
    from compress.evaluate import evaluate
    from compress.metrics import tagging_map
    from compress.model import extract, recalibrate_bn

    spec = space.largest()
    net = extract(supernet, spec)
    recalibrate_bn(net, train_data.batch(torch.arange(min(256, len(train_data))))["images"])
    quality = evaluate(net, val)
    scores: dict[str, Any] = {
        "subnet": "largest",
        "val_images": len(val),
        "tagging_map_trained_head": quality.tasks.get("tagging", {}).get("map"),
        "quality": quality.tasks,
    }
    if objective == "contrastive":
        image_text = load_image_text(out)
        scores["tagging_map_zero_shot"] = tagging_map(
            zero_shot_scores(net, image_text, val), val.tags.numpy()
        )
        scores["prompt"] = PROMPT
    return scores

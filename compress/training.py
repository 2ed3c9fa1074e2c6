"""Training: the elastic supernet (sandwich rule + in-place distillation), then its heads on a frozen backbone.

Recipe (``train_supernet``), sized so the defaults finish in a few minutes on 2 CPU cores:

1. **Joint phase** (``TrainConfig.joint_fraction`` of the steps). Each step runs the *sandwich*: the largest
   subnet learns from the labels; the smallest and ``num_random`` random subnets (random widths, depths,
   kernels, expansions, resolutions and branch points) learn from the labels *and* from the largest subnet's
   detached outputs (in-place distillation, BigNAS/OFA style: soft-target BCE on tag logits, heatmaps and
   saliency). Gradients of all subnets accumulate into the shared weights before one optimizer step. Every
   subnet sees the batch at its own resolution (BigNAS): the largest at the space's highest, the smallest at
   its lowest, a random subnet at its sampled one, capped at ``TrainConfig.resolution`` (images resized on
   the fly from the cached training resolution; boxes scaled with them). The default cap, 160 px, is the
   default space's highest resolution, so every candidate is trained at the resolution it is scored and
   costed at (a subnet scored far above its training resolution loses its box sizes: detection mAP fell to 0
   at 288 px after training at 112). The largest and smallest subnets are the extremes of the backbone, but
   their heads step through the allowed branch points (``rotate_heads``), so every head module (one per task
   and branch) is trained about equally often; residual blocks start as the identity (zero-initialised last
   BN scale), so the deep subnets train as fast as the shallow ones.
2. **Head phase** (the rest). As ANSA trains its task heads on a frozen backbone, the backbone (stem and
   stages) is frozen and only the heads train, at *every* allowed branch point: each step samples the sandwich
   subnets, and for each one every branch choice of every head is trained on the same frozen features.

AdamW with a cosine schedule and warm-up; BN statistics are not meaningful for subnets after training, so every
extracted model is BN-recalibrated before it is evaluated (``compress.model.recalibrate_bn``).

The run is checkpointed atomically every ``checkpoint_every`` steps and resumes from its last checkpoint; the
finished supernet is reused when its config hash (space, data, recipe) matches. Under ``torchrun`` (WORLD_SIZE
> 1) each rank trains on its shard of every batch and gradients are averaged with ``torch.distributed``
all-reduce (gloo on CPU, NCCL on GPU); every rank samples the same subnets (shared seed).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from compress._safeio import load_state as _load_state
from compress.errors import ConfigError, DataError, RunError
from compress.progress import Bar

__all__ = ["SUPERNET_FILE", "TrainConfig", "TrainResult", "load_supernet", "resize_batch", "train_supernet"]

SUPERNET_FILE = "supernet.safetensors"
"""The supernet's file name in a run directory (older releases wrote a pickled ``supernet.pt``)."""

FORMAT = 1
SAMPLING = "rotated-heads"  # in the config hash: a supernet sampled otherwise is not reused
#: A time-limited training (``train_supernet(time_limit_s=...)``) times steps PROBE[0]..PROBE[1] (the first
#: ones pay for allocation) and then fixes its step count: as many as fit the limit, never more than the
#: recipe's ``steps`` and never fewer than MIN_STEP_FRACTION of them (fewer leave the inherited weights too
#: raw to rank subnets). The probe lies inside the warm-up and the joint phase, where the count changes
#: nothing yet, and head-phase steps cost no more than joint ones (no backbone backward), so the estimate
#: errs long.
PROBE = (2, 10)
MIN_STEP_FRACTION = 0.5


@dataclass(frozen=True)
class TrainConfig:
    """Supernet training recipe. ``steps`` counts optimizer steps over both phases."""

    steps: int = 200
    batch_size: int = 24
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 30
    joint_fraction: float = 0.75
    num_random: int = 1
    distill_weight: float = 1.0
    checkpoint_every: int = 50
    resolution: int = 160
    seed: int = 0
    amp: bool = False
    grad_checkpoint: bool = False

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"steps must be >= 1, but got {self.steps}")
        if self.batch_size < 2:
            raise ConfigError(f"batch_size must be >= 2, but got {self.batch_size}")
        if not 0 < self.lr < 1:
            raise ConfigError(f"lr must lie in (0, 1), but got {self.lr}")
        if not 0 <= self.joint_fraction <= 1:
            raise ConfigError(f"joint_fraction must lie in [0, 1], but got {self.joint_fraction}")
        if not 32 <= self.resolution <= 1024:
            raise ConfigError(f"training resolution must lie in [32, 1024], but got {self.resolution}")
        if self.num_random < 0:
            raise ConfigError(f"num_random must be >= 0, but got {self.num_random}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TrainResult:
    """What ``train_supernet`` returns: the trained supernet, its file and how the training went."""

    supernet: Any
    path: Path
    config_hash: str
    reused: bool
    seconds: float
    images_per_second: float
    history: list[dict[str, float]]
    #: optimizer steps trained, and the recipe's (fewer only under a time limit)
    steps: int = 0
    planned_steps: int = 0


# -- helpers -------------------------------------------------------------------------------------------------
def config_hash(space: Any, data_key: str, config: TrainConfig) -> str:
    """Hash of everything that determines the trained weights (not of AMP/checkpointing switches)."""
    recipe = {
        k: v for k, v in config.to_dict().items() if k not in ("amp", "grad_checkpoint", "checkpoint_every")
    }
    blob = json.dumps(
        {
            "format": FORMAT,
            "sampling": SAMPLING,
            "space": space.to_dict(),
            "data": data_key,
            "recipe": recipe,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def resize_batch(batch: dict[str, torch.Tensor], resolution: int) -> dict[str, torch.Tensor]:
    """The batch at ``resolution``: images bilinear, saliency masks nearest, boxes scaled."""
    size = batch["images"].shape[-1]
    if size == resolution:
        return batch
    scale = resolution / size
    out = dict(batch)
    out["images"] = F.interpolate(
        batch["images"], size=(resolution, resolution), mode="bilinear", align_corners=False
    )
    out["saliency"] = F.interpolate(batch["saliency"].float(), size=(resolution, resolution), mode="nearest")
    out["boxes"] = batch["boxes"] * scale
    return out


def _ddp_on_gpu() -> bool:
    """Under torchrun: one GPU per local rank (NCCL) if there are enough, else every rank on the CPU (gloo)."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
    return torch.cuda.is_available() and torch.cuda.device_count() >= local


def dist_world() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if _ddp_on_gpu() else "gloo")
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def training_device(world: int, amp: bool) -> torch.device:
    if world > 1:
        if not _ddp_on_gpu():
            return torch.device("cpu")
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
        return device
    return torch.device("cuda" if torch.cuda.is_available() and amp else "cpu")


def allreduce_grads(params: list[torch.nn.Parameter], world: int) -> None:
    if world == 1:
        return
    import torch.distributed as dist

    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad)
        p.grad /= world


def lr_at(step: int, config: TrainConfig, total: int) -> float:
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    t = (step - config.warmup_steps) / max(1, total - config.warmup_steps)
    return 0.5 * config.lr * (1 + math.cos(math.pi * min(1.0, t)))


def batch_indices(n: int, batch_size: int, rng: torch.Generator) -> Iterator[torch.Tensor]:
    while True:
        perm = torch.randperm(n, generator=rng)
        for i in range(0, n - batch_size + 1, batch_size):
            yield perm[i : i + batch_size]


def _save_atomic(obj: dict[str, Any], path: Path) -> None:
    from compress._safeio import save_state

    save_state(obj, path)  # safetensors + JSON header, temp file + rename: never a pickle


def rotate_heads(space: Any, spec: Any, step: int) -> Any:
    """``spec`` with each head at its ``step``-th allowed branch point (cyclically).

    The largest and smallest subnets of every joint step go through this, so each head module (one per task
    and branch) is trained about equally often. Left at their extreme branches, those two fed the extreme
    heads three times as often as the middle ones, so a subnet branching at a middle stage (as the hand-scaled
    MobileNetV3 shapes do) scored low for the capacity it had.
    """
    choices = {h.task: list(h.branches) for h in space.heads}
    heads = tuple(
        dataclasses.replace(h, branch=choices[h.task][step % len(choices[h.task])]) for h in spec.heads
    )
    return dataclasses.replace(spec, heads=heads)


def _head_variants(space: Any, spec: Any) -> list[Any]:
    """``spec`` with each head moved through its allowed branch points (head phase: all of them)."""
    choices = {h.task: list(h.branches) for h in space.heads}
    rounds = max(len(c) for c in choices.values())
    variants = []
    for i in range(rounds):
        heads = tuple(
            dataclasses.replace(h, branch=choices[h.task][i % len(choices[h.task])]) for h in spec.heads
        )
        variants.append(dataclasses.replace(spec, heads=heads))
    return variants


# -- the loop ------------------------------------------------------------------------------------------------
def train_supernet(
    space: Any,
    train_data: Any,
    out: str | Path,
    *,
    config: TrainConfig = TrainConfig(),
    data_key: str = "",
    progress: bool = True,
    supernet: Any = None,
    time_limit_s: float | None = None,
) -> TrainResult:
    """Train (or reuse, or resume) the supernet of ``space`` on ``train_data`` and save it to ``out``.

    ``out`` is the supernet file (``runs/NAME/supernet.safetensors``); ``out`` + ``.ckpt`` holds the resumable
    state. Both are safetensors + JSON (``compress._safeio``), never a pickle.
    A finished file whose config hash matches is loaded instead of training again (``reused=True``).

    ``time_limit_s``: train ``config.steps`` steps or as many as fit in this many seconds, never fewer than
    ``MIN_STEP_FRACTION`` of them (:data:`PROBE` says how the count is fixed). The count is part of the
    checkpoint, so a resumed training keeps it; the finished file's hash is that of the recipe with the
    count it trained, and a later time-limited call of the same recipe reuses it whatever count it got.

    The step loop stays in this one function on purpose: its state (step, both RNGs, optimizer, history) is
    exactly what a checkpoint saves and a resume restores; each step's work is ``_sandwich_backward``.
    """
    # long: the step loop stays whole on purpose; the docstring's last paragraph says why
    from compress.model import Supernet

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    key = config_hash(space, data_key, config)  # the recipe at its full step count
    ckpt = out.with_name(out.name + ".ckpt")
    reused = _reuse(out, key, limited=time_limit_s is not None)
    if reused is not None:
        if _checkpoint(ckpt, key):  # this training's resumable state, left by a kill between save and removal
            ckpt.unlink(missing_ok=True)
        return reused
    rank, world = dist_world()
    check_batch(len(train_data), config.batch_size, world)
    torch.manual_seed(config.seed)
    net = supernet if supernet is not None else Supernet(space)
    device = place(net, world, amp=config.amp, grad_checkpoint=config.grad_checkpoint)
    backbone = [p for n, p in net.named_parameters() if not n.startswith("heads")]
    heads = [p for n, p in net.named_parameters() if n.startswith("heads")]
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    step, history, total = 0, [], config.steps
    sample_rng = random.Random(config.seed)
    data_rng = torch.Generator().manual_seed(config.seed)
    state = _checkpoint(ckpt, key)
    if state:
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, history = int(state["step"]), list(state["history"])
        total = int(state.get("total", config.steps))
        sample_rng.setstate(_tuple(state["sample_rng"]))
        data_rng.set_state(state["data_rng"])
    batches = batch_indices(len(train_data), config.batch_size, data_rng)
    shard = slice(rank * config.batch_size // world, (rank + 1) * config.batch_size // world)
    autocast = torch.autocast(device.type, enabled=config.amp and device.type == "cuda")
    bar = Bar("supernet", total=total, enabled=progress and rank == 0, done=step, transient=False)
    start, images = time.perf_counter(), 0
    # a time-limited training not yet sized (a resumed one was sized before its first checkpoint)
    probe = (step + PROBE[0], step + PROBE[1]) if time_limit_s is not None and not state else None
    probe_started = start
    net.train()
    while step < total:
        joint = step < int(round(total * config.joint_fraction))
        for p in backbone:
            p.requires_grad_(joint)
        batch = {k: v[shard].to(device) for k, v in train_data.batch(next(batches)).items()}
        specs = [rotate_heads(space, space.largest(), step), rotate_heads(space, space.smallest(), step + 1)]
        specs += [space.sample(sample_rng) for _ in range(config.num_random)]
        for g in optimizer.param_groups:
            g["lr"] = lr_at(step, config, total)
        optimizer.zero_grad(set_to_none=True)
        logs, seen = _sandwich_backward(
            net, space, batch, specs, joint=joint, config=config, autocast=autocast
        )
        images += seen
        allreduce_grads(backbone + heads if joint else heads, world)
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        optimizer.step()
        step += 1
        history.append({"step": step, "phase": 0.0 if joint else 1.0, **logs})
        bar.update(advance=1, info=" ".join(f"{k}={v:.3f}" for k, v in logs.items()))
        if probe is not None and step == probe[0]:
            probe_started = time.perf_counter()
        elif probe is not None and step == probe[1]:
            now = time.perf_counter()
            per_step = (now - probe_started) / (probe[1] - probe[0])
            total = steps_that_fit(config.steps, step, time_limit_s - (now - start), per_step, world)
            probe = None
            bar.set_total(total)
        if rank == 0 and (step % config.checkpoint_every == 0 or step == total):
            state = {"config_hash": key, "model": net.state_dict(), "optimizer": optimizer.state_dict()}
            state |= {"step": step, "total": total, "history": history}
            state |= {"sample_rng": _listify(sample_rng.getstate()), "data_rng": data_rng.get_state()}
            _save_atomic(state, ckpt)
    bar.close()
    seconds = time.perf_counter() - start
    ips = images / seconds if seconds > 0 else 0.0
    for p in net.parameters():
        p.requires_grad_(True)
    trained = config if total == config.steps else dataclasses.replace(config, steps=total)
    final_key = config_hash(space, data_key, trained)
    if rank == 0:
        _save_supernet(out, net, space, trained, final_key, history, ips, cap_hash=key, planned=config.steps)
        ckpt.unlink(missing_ok=True)
    if world > 1:  # every rank returns once the supernet file is written
        import torch.distributed as dist

        dist.barrier()
    return TrainResult(net.cpu().eval(), out, final_key, False, seconds, ips, history, total, config.steps)


def steps_that_fit(cap: int, done: int, seconds_left: float, per_step: float, world: int = 1) -> int:
    """The step count of a time-limited training: ``done`` so far plus what fits in ``seconds_left`` at
    ``per_step``, within [``MIN_STEP_FRACTION`` x ``cap``, ``cap``] (and never under ``done``). Under DDP every
    rank must agree: rank 0's count is broadcast."""
    fit = done + int(max(0.0, seconds_left) / per_step) if per_step > 0 else cap
    total = max(done, min(cap, max(math.ceil(MIN_STEP_FRACTION * cap), fit)))
    if world > 1:
        import torch.distributed as dist

        shared = torch.tensor([total])
        dist.broadcast(shared, 0)
        total = int(shared.item())
    return total


def place(net: Any, world: int, *, amp: bool, grad_checkpoint: bool = False) -> torch.device:
    """Move ``net`` to this process's device (channels-last on CPU, where PyTorch's depthwise backward is
    several times faster that way); switch on gradient checkpointing when the recipe asks. Used by the
    supernet's and the pretraining's loops."""
    device = training_device(world, amp)
    net.to(device)
    if device.type == "cpu":
        net.to(memory_format=torch.channels_last)
    if grad_checkpoint and hasattr(net, "grad_checkpoint"):
        net.grad_checkpoint = True
    return device


def _reuse(out: Path, key: str, *, limited: bool = False) -> TrainResult | None:
    """The finished supernet at ``out`` when it was trained with this config hash (``limited``: or with this
    recipe cut short by a time limit), else None."""
    if not out.exists():
        return None
    try:
        net, meta = load_supernet(out, with_meta=True)
    except RunError:
        return None
    if meta.get("config_hash") != key and not (limited and meta.get("cap_hash") == key):
        return None
    history = meta.get("history", [])
    steps = len(history)
    planned = int(meta.get("planned_steps", steps))
    return TrainResult(
        net, out, meta["config_hash"], True, 0.0, meta.get("images_per_second", 0.0), history, steps, planned
    )


def check_batch(images: int, batch_size: int, world: int, *, what: str = "batch size") -> None:
    """A training loop needs a full batch, and at least 2 images of it per process."""
    if images < batch_size:  # no full batch: the loop would never get one
        raise DataError(
            f"the training set has {images} images, fewer than the {what} {batch_size}; "
            "use a smaller batch size or more images"
        )
    if batch_size // world < 2:
        raise ConfigError(
            f"batch size {batch_size} over {world} processes leaves under 2 images per process; "
            f"use a batch size of at least {2 * world}"
        )


def _checkpoint(ckpt: Path, key: str) -> dict[str, Any]:
    """The resumable state at ``ckpt`` when it belongs to this config hash, else ``{}`` (a corrupt or old,
    pickled checkpoint too: training starts over and overwrites it)."""
    if not ckpt.exists():
        return {}
    try:
        state = _load_state(ckpt, what="supernet checkpoint", fix="delete it to train from the start")
    except RunError:
        return {}
    return state if state.get("config_hash") == key else {}


def _sandwich_backward(
    net: Any, space: Any, batch: dict[str, torch.Tensor], specs: list[Any], *, joint: bool,
    config: TrainConfig, autocast: Any,
) -> tuple[dict[str, float], int]:  # fmt: skip
    """Accumulate the gradients of one sandwich step: ``specs`` = largest, smallest, random ones, each at its
    own resolution. Joint phase: the whole subnet, the smaller ones also distilled from the largest's
    outputs. Head phase (frozen backbone): one backbone forward per subnet feeds every branch choice of every
    head. Returns the logged losses and the number of images seen."""
    from compress.model import distillation_loss, multitask_loss

    teacher: dict[str, torch.Tensor] | None = None
    logs: dict[str, float] = {}
    images = 0
    for i, spec in enumerate(specs):
        b = resize_batch(batch, min(spec.resolution, config.resolution))
        variants = [spec] if joint else _head_variants(space, spec)
        features = None
        if not joint:
            with torch.no_grad(), autocast:
                deepest = max(v.built_stages for v in variants)
                features = net.features(b["images"], spec, deepest)
        for variant in variants:
            with autocast:
                outputs = net(b["images"], variant) if features is None else net.run_heads(features, variant)
                loss = multitask_loss(outputs, b)["total"]
                if i > 0 and teacher is not None and joint and config.distill_weight:
                    loss = loss + config.distill_weight * distillation_loss(outputs, teacher)["total"]
            loss.backward()
            images += len(b["images"])
            if i == 0 and variant is spec:
                teacher = {k: v.detach() for k, v in outputs.items()}
                logs["loss_largest"] = float(loss.detach())
        if i == 1:
            logs["loss_smallest"] = float(loss.detach())
    return logs, images


def _save_supernet(
    out: Path, net: Any, space: Any, config: TrainConfig, key: str, history: list, ips: float, *,
    cap_hash: str | None = None, planned: int | None = None,
) -> None:  # fmt: skip
    """``cap_hash`` / ``planned``: the hash and step count of the recipe in full (a time limit may have cut
    the training short of it)."""
    _save_atomic(
        {
            "format": FORMAT,
            "config_hash": key,
            "cap_hash": cap_hash or key,
            "planned_steps": planned or config.steps,
            "space": json.dumps(space.to_dict()),
            "model": net.cpu().state_dict(),
            "history": history,
            "images_per_second": ips,
            "config": json.dumps(config.to_dict()),
        },
        out,
    )


def load_supernet(path: str | Path, *, with_meta: bool = False) -> Any:
    """Load a trained supernet file (safetensors + JSON; a pickled ``.pt`` is refused with what to do)."""
    from compress.model import Supernet, SupernetSpace

    path = Path(path)
    if not path.is_file():
        raise RunError(f"no supernet at {path}; train one with `compress train`")
    try:
        state = _load_state(path, what="supernet", fix="delete it and retrain (`compress train`)")
        if state.get("format") != FORMAT:
            raise RunError(f"{path} has supernet format {state.get('format')!r}; this toolkit reads {FORMAT}")
        space = SupernetSpace.from_dict(json.loads(state["space"]))
        net = Supernet(space)
        net.load_state_dict(state["model"])
    except RunError:
        raise
    except Exception as exc:  # corrupt or foreign file
        raise RunError(
            f"cannot load the supernet {path}: {type(exc).__name__}: {exc}; delete it to retrain"
        ) from None
    net.eval()
    if with_meta:
        meta = {
            k: state[k]
            for k in ("config_hash", "cap_hash", "planned_steps", "history", "images_per_second")
            if k in state
        }
        return net, meta
    return net


def _listify(state: Any) -> Any:
    if isinstance(state, tuple):
        return [_listify(s) for s in state]
    return state


def _tuple(state: Any) -> Any:
    if isinstance(state, list):
        return tuple(_tuple(s) for s in state)
    return state


def train(
    *,
    data: str = "builtin",
    out: str | Path = "runs/train",
    config: TrainConfig = TrainConfig(),
    space: Any = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    init: str | Path | None = None,
) -> TrainResult:
    """Load ``data`` at the training resolution and train (or reuse) the supernet into ``out/SUPERNET_FILE``.

    ``space`` defaults to ``compress.model.default_space`` sized to the data set's categories. ``init``: a
    MobileNetV3-Large state dict (timm or torchvision layout) to start from (``compress.model.mnv3_weights``).
    """
    from compress.data import load_data
    from compress.model import default_space

    if init is not None:  # a file that cannot be used fails before the data is loaded
        from compress.model.mnv3_weights import read_mobilenetv3

        read_mobilenetv3(init)
    train_data, _ = load_data(data, resolution=config.resolution, cache_dir=cache_dir, progress=progress)
    space = space if space is not None else default_space(num_classes=train_data.num_classes)
    if space.num_classes != train_data.num_classes:
        raise ConfigError(
            f"the space has {space.num_classes} classes but the data set {data!r} has {train_data.num_classes}"
        )
    if init is not None:
        from compress.pretrain import start_supernet

        return start_supernet(
            space,
            train_data,
            Path(out) / SUPERNET_FILE,
            config=config,
            data_key=f"{data}@{config.resolution}",
            init=init,
            progress=progress,
        )
    return train_supernet(
        space,
        train_data,
        Path(out) / SUPERNET_FILE,
        config=config,
        data_key=f"{data}@{config.resolution}",
        progress=progress,
    )

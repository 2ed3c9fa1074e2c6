"""The elastic multi-task supernet and ``extract``: one set of shared weights for every spec in a space.

Weight sharing (OFA / BigNAS style) over width (output-channel prefixes), depth (the first ``d`` blocks of a
stage), kernel size (the centre crop of the largest depthwise kernel) and expansion (a prefix of the expanded
channels); every head has one module per allowed branch stage, whose input layer takes any prefix of that
stage's widest output. ``Supernet(space)(x, spec)`` returns the same dict as ``MultiTaskNet(spec)(x)``, and
``extract(supernet, spec)`` copies the sliced weights into that plain static ``MultiTaskNet``.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from compress.errors import ConfigError
from compress.model.elastic import ElasticConvBNAct, ElasticInvertedResidual, elastic_head
from compress.model.net import IMAGENET_MEAN, IMAGENET_STD, MultiTaskNet
from compress.model.space import SupernetSpace
from compress.model.spec import ArchSpec, expanded_channels

__all__ = ["Supernet", "extract"]


def _max_expanded(in_choices: tuple[int, ...], ratios: tuple[float, ...]) -> int:
    return max(expanded_channels(c, r) for c in in_choices for r in ratios)


def _needs_expand(in_choices: tuple[int, ...], ratios: tuple[float, ...]) -> bool:
    return any(expanded_channels(c, r) != c for c in in_choices for r in ratios)


class Supernet(nn.Module):
    """Weight-sharing supernet over ``space``; ``forward(x, spec)`` runs the subnet ``spec`` describes.

    Module tree mirrors ``MultiTaskNet`` (``stem``, ``stages.i.j`` blocks with ``expand``/``depthwise``/
    ``se``/``project``), heads keyed ``"{task}_{branch}"``. ``x``: float images in [0, 1], normalised inside.

    Speed on CPU: train it with ``supernet.to(memory_format=torch.channels_last)`` (PyTorch's NCHW
    depthwise-conv backward is slow, worst for 7x7 kernels); ``forward`` then converts ``x`` to match.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, space: SupernetSpace) -> None:
        super().__init__()
        self.space = space
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.stem = ElasticConvBNAct(3, space.stem, 3, stride=2, act=space.stem_act)
        # Gradient checkpointing (``compress.training.place``): in training with gradients on, each block's
        # activations are recomputed in the backward pass instead of kept, so a large batch fits GPU memory at
        # about one more forward pass of compute. The recomputation updates BN running statistics once more;
        # they are not used (every extracted subnet is BN-recalibrated).
        self.grad_checkpoint = False
        self.stages = nn.ModuleList()
        prev: tuple[int, ...] = (space.stem,)
        for st in space.stages:
            blocks = nn.ModuleList()
            for j in range(max(st.depths)):
                ins = prev if j == 0 else st.widths
                blocks.append(
                    ElasticInvertedResidual(
                        max(ins),
                        _max_expanded(ins, st.expands),
                        max(st.widths),
                        kernel=max(st.kernels),
                        stride=st.stride if j == 0 else 1,
                        se=st.se,
                        act=st.act,
                        has_expand=_needs_expand(ins, st.expands),
                        zero_init_residual=j > 0,
                    )
                )
            self.stages.append(blocks)
            prev = st.widths
        self.heads = nn.ModuleDict(
            {
                f"{h.task}_{b}": elastic_head(
                    h.task, max(space.stages[b].widths), h.channels, space.num_classes
                )
                for h in space.heads
                for b in h.branches
            }
        )

    def forward(self, x: torch.Tensor, spec: ArchSpec) -> dict[str, torch.Tensor]:
        return self.run_heads(self.features(x, spec), spec)

    def features(self, x: torch.Tensor, spec: ArchSpec, stages: int | None = None) -> list[torch.Tensor]:
        """The backbone's output of each of the first ``stages`` stages (default: the spec's built ones)."""
        self.space.check(spec)
        if self.stem.conv.weight.is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.stem((x - self.mean) / self.std)
        in_ch, features = spec.stem, []
        count = spec.built_stages if stages is None else stages
        for stage, blocks in zip(spec.stages[:count], self.stages, strict=False):
            for j in range(stage.depth):
                block, args = cast(nn.ModuleList, blocks)[j], (expanded_channels(in_ch, stage.expand[j]),)
                if self.grad_checkpoint and self.training and torch.is_grad_enabled():
                    x = checkpoint(block, x, *args, stage.width, stage.kernel, use_reentrant=False)
                else:
                    x = block(x, *args, stage.width, stage.kernel)
                in_ch = stage.width
            features.append(x)
        return features

    def run_heads(self, features: list[torch.Tensor], spec: ArchSpec) -> dict[str, torch.Tensor]:
        """Every head of ``spec`` on the stage features it branches from."""
        out: dict[str, torch.Tensor] = {}
        for h in spec.heads:
            out.update(self.heads[f"{h.task}_{h.branch}"](features[h.branch]))
        return out


def _supernet_key(key: str, branches: dict[str, int]) -> str:
    if key.startswith("heads."):
        task, rest = key[len("heads.") :].split(".", 1)
        return f"heads.{task}_{branches[task]}.{rest}"
    return key


def _slice_like(big: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Prefix of ``big`` along the channel dims (0, 1) and centre crop along kernel dims (2, 3)."""
    index = []
    for d, (n_big, n) in enumerate(zip(big.shape, shape, strict=True)):
        if n > n_big:
            raise ConfigError(f"cannot slice {tuple(big.shape)} to {tuple(shape)}: dimension {d} too small")
        off = (n_big - n) // 2 if d >= 2 else 0
        index.append(slice(off, off + n))
    return big[tuple(index)]


@torch.no_grad()
def extract(supernet: Supernet, spec: ArchSpec) -> MultiTaskNet:
    """The plain static ``MultiTaskNet(spec)`` holding the supernet's weights for ``spec``.

    In eval mode its outputs equal ``supernet(x, spec)``. BN running statistics are the supernet's slices;
    call ``recalibrate_bn`` on the result for statistics specific to this subnet.
    """
    supernet.space.check(spec)
    net = MultiTaskNet(spec)
    source = supernet.state_dict()
    branches = {h.task: h.branch for h in spec.heads}
    state = {}
    for key, value in net.state_dict().items():
        big = source[_supernet_key(key, branches)]
        state[key] = big.clone() if value.dim() == 0 else _slice_like(big, value.shape).clone()
    net.load_state_dict(state, strict=True)
    device = next(supernet.parameters()).device
    return net.to(device).train(supernet.training)

"""Elastic layers of the weight-sharing supernet (OFA / BigNAS style).

Each layer holds the largest weight and runs a sub-layer on request: output channels are a prefix of the
largest layer's, input channels a prefix matching the incoming tensor, a smaller depthwise kernel the centre
crop of the largest kernel, BatchNorm the prefix of its weight, bias and running statistics. The static
layers ``extract`` produces hold exactly these slices. Parameter names match the static modules'
(``conv``, ``bn``, ``act``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from compress.model.blocks import BN_EPS, BN_MOMENTUM, make_act, se_channels
from compress.model.heads import DetectionHead, SaliencyHead, TaggingHead

__all__ = [
    "ElasticBatchNorm2d",
    "ElasticConv2d",
    "ElasticConvBNAct",
    "ElasticInvertedResidual",
    "ElasticSqueezeExcite",
    "elastic_head",
]


class ElasticConv2d(nn.Conv2d):
    """A Conv2d that runs on any input-channel prefix, output-channel prefix and centred smaller kernel."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int = 1,
        *,
        stride: int = 1,
        depthwise: bool = False,
        bias: bool = False,
    ) -> None:
        groups = in_channels if depthwise else 1
        super().__init__(in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=bias)
        self.depthwise = depthwise

    def forward(
        self, x: torch.Tensor, out_channels: int | None = None, kernel: int | None = None
    ) -> torch.Tensor:
        in_ch = x.shape[1]
        big = self.kernel_size[0]
        k = big if kernel is None else kernel
        if self.depthwise:
            out, groups, weight = in_ch, in_ch, self.weight[:in_ch]
        else:
            out = self.out_channels if out_channels is None else out_channels
            groups, weight = 1, self.weight[:out, :in_ch]
        if k != big:
            off = (big - k) // 2
            weight = weight[:, :, off : off + k, off : off + k]
        bias = None if self.bias is None else self.bias[:out]
        return F.conv2d(x, weight, bias, self.stride, k // 2, 1, groups)


class ElasticBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d over the first ``C`` channels (C from the input) of its parameters and statistics."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average (used by recalibrate_bn)
                factor = 1.0 / float(self.num_batches_tracked.item())
        use_batch = self.training or not self.track_running_stats
        mean = None if self.running_mean is None else self.running_mean[:c]
        var = None if self.running_var is None else self.running_var[:c]
        return F.batch_norm(x, mean, var, self.weight[:c], self.bias[:c], use_batch, factor, self.eps)


class ElasticConvBNAct(nn.Module):
    """Elastic counterpart of ``ConvBNAct``: ``forward(x, out_channels=None, kernel=None)``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int = 1,
        *,
        stride: int = 1,
        depthwise: bool = False,
        act: str | None = "relu",
    ) -> None:
        super().__init__()
        self.conv = ElasticConv2d(in_channels, out_channels, kernel, stride=stride, depthwise=depthwise)
        self.bn = ElasticBatchNorm2d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = make_act(act)

    def forward(
        self, x: torch.Tensor, out_channels: int | None = None, kernel: int | None = None
    ) -> torch.Tensor:
        x = self.bn(self.conv(x, out_channels, kernel))
        return x if self.act is None else self.act(x)


class ElasticSqueezeExcite(nn.Module):
    """Elastic SE: on ``C`` input channels it squeezes to ``se_channels(C)`` like the static block."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = ElasticConv2d(channels, se_channels(channels), 1, bias=True)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = ElasticConv2d(se_channels(channels), channels, 1, bias=True)
        self.gate = nn.Hardsigmoid(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        s = self.relu(self.fc1(self.pool(x), se_channels(c)))
        return x * self.gate(self.fc2(s, c))


class ElasticInvertedResidual(nn.Module):
    """Elastic "bneck" sized for the largest choice; ``forward(x, expanded, out_channels, kernel)``.

    The expand conv is skipped when ``expanded`` equals the input width and the residual is used when the
    stride is 1 and the output width equals the input width: the same rules as ``InvertedResidual``.
    ``zero_init_residual`` (for blocks that always add their input: the second and later of a stage) starts
    the project BN's scale at zero, so a deeper subnet starts as the shallower one (BigNAS).
    """

    def __init__(
        self,
        in_channels: int,
        expanded: int,
        out_channels: int,
        *,
        kernel: int,
        stride: int,
        se: bool,
        act: str,
        has_expand: bool = True,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        self.stride = stride
        self.expand = ElasticConvBNAct(in_channels, expanded, 1, act=act) if has_expand else None
        self.depthwise = ElasticConvBNAct(expanded, expanded, kernel, stride=stride, depthwise=True, act=act)
        self.se = ElasticSqueezeExcite(expanded) if se else None
        self.project = ElasticConvBNAct(expanded, out_channels, 1, act=None)
        if zero_init_residual:
            nn.init.zeros_(self.project.bn.weight)

    def forward(self, x: torch.Tensor, expanded: int, out_channels: int, kernel: int) -> torch.Tensor:
        in_ch = x.shape[1]
        if expanded == in_ch:
            y = x
        elif self.expand is None:
            raise ValueError(f"this block has no expand conv, but expanded={expanded} != in_channels={in_ch}")
        else:
            y = self.expand(x, expanded)
        y = self.depthwise(y, kernel=kernel)
        if self.se is not None:
            y = self.se(y)
        y = self.project(y, out_channels)
        return x + y if self.stride == 1 and in_ch == out_channels else y


def elastic_head(task: str, max_in: int, channels: tuple[int, ...], num_classes: int) -> nn.Module:
    """A head whose input layers take any prefix of ``max_in`` channels; the rest is a static head."""
    if task == "tagging":
        head: nn.Module = TaggingHead(max_in, channels, num_classes)  # type: ignore[arg-type]
        head.conv = ElasticConvBNAct(max_in, channels[0], 1, act="hswish")  # type: ignore[assignment]
    elif task == "detection":
        head = DetectionHead(max_in, channels, num_classes)  # type: ignore[arg-type]
        head.tower[0] = ElasticConvBNAct(max_in, max_in, 3, depthwise=True)
        head.tower[1] = ElasticConvBNAct(max_in, channels[0], 1)
    elif task == "saliency":
        head = SaliencyHead(max_in, channels, num_classes)  # type: ignore[arg-type]
        head.reduce = ElasticConvBNAct(max_in, channels[0], 1)  # type: ignore[assignment]
    else:
        raise ValueError(f"unknown task {task!r}")
    return head

"""Benchmark networks for fitting the host profile: single layers and random MobileNetV3-style nets.

``micro_benchmarks()`` covers every op class at the shapes MobileNetV3-style multi-task nets use;
``random_mbv3(rng)`` draws a multi-head network (tagging, CenterNet-style detection, saliency) from a
MobileNetV3-like space. Both are plain torch and random-weighted: only shapes matter for latency.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["ACTIVATIONS", "CNN_RESOLUTIONS", "micro_benchmarks", "random_cnn", "random_mbv3"]


def _div8(v: float) -> int:
    return max(8, int(v + 4) // 8 * 8)


class _Op:
    """Builds a one-op ``nn.Module`` from a callable (defined lazily: torch is imported on first use)."""

    cls: Any = None

    @classmethod
    def make(cls, fn: Any, *modules: Any) -> Any:
        from torch import nn

        if cls.cls is None:

            class OpModule(nn.Module):
                def __init__(self, fn: Any, mods: tuple) -> None:
                    super().__init__()
                    self.fn = fn
                    self.mods = nn.ModuleList(mods)

                def forward(self, x: Any) -> Any:
                    return self.fn(x, *self.mods)

            cls.cls = OpModule
        return cls.cls(fn, modules)


def _conv(cin: int, cout: int, k: int, s: int = 1, groups: int = 1, act: str | None = "relu") -> Any:
    from torch import nn

    acts: dict[str | None, Any] = {"relu": nn.ReLU, "hswish": nn.Hardswish, None: None}
    layers: list[Any] = [
        nn.Conv2d(cin, cout, k, s, (k - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if acts[act] is not None:
        layers.append(acts[act](inplace=True))
    return nn.Sequential(*layers)


def micro_benchmarks() -> list[tuple[str, Any, tuple[int, ...]]]:
    """``(label, module, input_shape)`` for single layers of every op class at MobileNetV3-like shapes."""
    # long: a table of cases, one add() per benchmark layer; split up, the table would be harder to scan
    import torch
    import torch.nn.functional as F
    from torch import nn

    out: list[tuple[str, Any, tuple[int, ...]]] = []

    def add(label: str, module: Any, shape: tuple[int, ...]) -> None:
        out.append((label, module, shape))

    for cin, cout, k, r, s in [
        (3, 16, 3, 224, 2),
        (3, 16, 3, 320, 2),
        (16, 32, 3, 56, 1),
        (32, 64, 3, 28, 1),
        (64, 64, 3, 14, 1),
        (24, 24, 3, 56, 1),
    ]:
        add(f"conv{k} {cin}>{cout} @{r}/s{s}", nn.Conv2d(cin, cout, k, s, k // 2, bias=False), (1, cin, r, r))
    for cin, cout, r in [
        (16, 64, 112),
        (16, 16, 112),
        (24, 72, 56),
        (72, 24, 56),
        (40, 120, 28),
        (120, 40, 28),
        (80, 480, 14),
        (480, 112, 14),
        (160, 960, 7),
        (960, 160, 7),
        (96, 576, 7),
        (48, 288, 14),
        (16, 96, 160),
        (200, 80, 14),
    ]:
        add(f"pw {cin}>{cout} @{r}", nn.Conv2d(cin, cout, 1, bias=False), (1, cin, r, r))
    for c, k, r, s in [
        (16, 3, 112, 1),
        (64, 3, 112, 2),
        (72, 3, 56, 1),
        (72, 5, 56, 2),
        (120, 5, 28, 1),
        (240, 3, 28, 2),
        (480, 3, 14, 1),
        (672, 5, 14, 2),
        (960, 5, 7, 1),
        (576, 5, 7, 1),
        (96, 7, 28, 1),
        (32, 3, 160, 1),
    ]:
        add(f"dw{k} {c} @{r}/s{s}", nn.Conv2d(c, c, k, s, k // 2, groups=c, bias=False), (1, c, r, r))
    for c, g, r in [(64, 4, 28), (128, 8, 14)]:
        add(f"gconv3 {c}/g{g} @{r}", nn.Conv2d(c, c, 3, 1, 1, groups=g, bias=False), (1, c, r, r))
    for cin, cout in [(576, 1024), (960, 1280), (1280, 1000), (1024, 12), (32, 10)]:
        add(f"linear {cin}>{cout}", nn.Linear(cin, cout), (1, cin))
    for c, r in [(16, 112), (72, 56), (120, 28), (480, 14), (960, 7)]:
        add(f"bn {c} @{r}", nn.BatchNorm2d(c), (1, c, r, r))
    acts = {
        "relu": nn.ReLU(),
        "relu6": nn.ReLU6(),
        "hswish": nn.Hardswish(),
        "hsigmoid": nn.Hardsigmoid(),
        "silu": nn.SiLU(),
        "sigmoid": nn.Sigmoid(),
    }
    for i, (name, act) in enumerate(acts.items()):
        for c, r in [(16, 112), (120, 28), (960, 7)][i % 2 :: 1 + i % 2]:
            add(f"{name} {c} @{r}", act, (1, c, r, r))
    add("maxpool2 32 @56", nn.MaxPool2d(2), (1, 32, 56, 56))
    add("maxpool3/s2 64 @112", nn.MaxPool2d(3, 2, 1), (1, 64, 112, 112))
    add("avgpool2 64 @28", nn.AvgPool2d(2), (1, 64, 28, 28))
    for c, r in [(72, 56), (120, 28), (960, 7), (576, 10)]:
        add(f"gpool {c} @{r}", nn.AdaptiveAvgPool2d(1), (1, c, r, r))
    add("upsample2 nearest 64 @28", nn.Upsample(scale_factor=2.0), (1, 64, 28, 28))
    add("upsample2 bilinear 32 @28", nn.Upsample(scale_factor=2.0, mode="bilinear"), (1, 32, 28, 28))
    add("add 24 @56", _Op.make(lambda x: x + x), (1, 24, 56, 56))
    add("add 112 @14", _Op.make(lambda x: x + x), (1, 112, 14, 14))
    add("mul-bcast 120 @28", _Op.make(lambda x: x * x[:, :, :1, :1]), (1, 120, 28, 28))
    add("mul-bcast 672 @14", _Op.make(lambda x: x * x[:, :, :1, :1]), (1, 672, 14, 14))
    add("cat 2x40 @28", _Op.make(lambda x: torch.cat([x, x], 1)), (1, 40, 28, 28))
    add("flatten 960", nn.Flatten(), (1, 960, 1, 1))
    add("reshape 96 @14", _Op.make(lambda x: x.reshape(1, -1)), (1, 96, 14, 14))
    # shapes of nets outside MobileNetV3's grid: odd widths (oneDNN's depthwise kernels block channels by 16),
    # 7x7 depthwise, wide layers at a few pixels (weights dominate the bytes), SiLU, mean pooling, upsampling
    for c, k, r, s in [(97, 7, 28, 1), (291, 7, 14, 2), (1500, 7, 3, 1), (800, 5, 5, 1), (45, 3, 40, 1)]:
        add(f"dw{k} {c} @{r}/s{s}", nn.Conv2d(c, c, k, s, k // 2, groups=c, bias=False), (1, c, r, r))
    for c, k, r, s in [(333, 5, 10, 1), (2400, 3, 2, 1), (61, 7, 56, 2)]:
        add(f"dw{k} {c} @{r}/s{s}", nn.Conv2d(c, c, k, s, k // 2, groups=c, bias=False), (1, c, r, r))
    for cin, cout, r in [(1000, 2000, 2), (640, 3000, 3), (97, 291, 28), (300, 1800, 4), (1800, 300, 4)]:
        add(f"pw {cin}>{cout} @{r}", nn.Conv2d(cin, cout, 1, bias=False), (1, cin, r, r))
    add("pw 37>222 @40", nn.Conv2d(37, 222, 1, bias=False), (1, 37, 40, 40))
    for cin, cout in [(2000, 1280), (1280, 4000), (3000, 700)]:
        add(f"linear {cin}>{cout}", nn.Linear(cin, cout), (1, cin))
    for c, r in [(48, 64), (300, 10), (1200, 3)]:
        add(f"silu {c} @{r}", nn.SiLU(), (1, c, r, r))
        add(f"mean {c} @{r}", _Op.make(lambda x: x.mean((2, 3), keepdim=True)), (1, c, r, r))
    add("upsample2 bilinear 48 @40", nn.Upsample(scale_factor=2.0, mode="bilinear"), (1, 48, 40, 40))
    add("upsample2 nearest 17 @64", nn.Upsample(scale_factor=2.0), (1, 17, 64, 64))
    add(
        "se 120 @28",
        _Op.make(
            lambda x, a, b: x * F.hardsigmoid(b(F.relu(a(F.adaptive_avg_pool2d(x, 1))))),
            nn.Conv2d(120, 32, 1),
            nn.Conv2d(32, 120, 1),
        ),
        (1, 120, 28, 28),
    )
    return out


# ----------------------------------------------------------------------------------------------------------


def _se(c: int) -> Any:
    import torch.nn.functional as F
    from torch import nn

    return _Op.make(
        lambda x, a, b: x * F.hardsigmoid(b(F.relu(a(F.adaptive_avg_pool2d(x, 1))))),
        nn.Conv2d(c, _div8(c / 4), 1),
        nn.Conv2d(_div8(c / 4), c, 1),
    )


def _block(cin: int, cout: int, k: int, exp: int, s: int, se: bool, act: str) -> Any:
    from torch import nn

    body = [_conv(cin, exp, 1, act=act)] if exp != cin else []
    body.append(_conv(exp, exp, k, s, groups=exp, act=act))
    if se:
        body.append(_se(exp))
    body.append(_conv(exp, cout, 1, act=None))
    seq = nn.Sequential(*body)
    if s == 1 and cin == cout:
        return _Op.make(lambda x, b: x + b(x), seq)
    return seq


#: ``random_mbv3``'s stages: (base width, kernel (not read: each stage draws its own, the first takes 3),
#: stride, squeeze-excite, activation).
_MBV3_STAGES = (
    (16, 3, 1, False, "relu"),
    (24, 3, 2, False, "relu"),
    (40, 5, 2, True, "relu"),
    (80, 3, 2, False, "hswish"),
    (112, 3, 1, True, "hswish"),
    (160, 5, 2, True, "hswish"),
)


def _mbv3_body(rng: np.random.Generator, width: float) -> tuple[Any, list[int], int]:
    """``random_mbv3``'s backbone: ``(body, taps, channels out)``; ``taps[i]``: the layers up to stage i.

    Draws each stage's kernel (the first stage's is 3), depth and every block's expansion from ``rng``.
    """
    from torch import nn

    cin = _div8(16 * width)
    feats = [_conv(3, cin, 3, 2, act="hswish")]
    taps: list[int] = []
    for i, (c, k, s, se, act) in enumerate(_MBV3_STAGES):
        c = _div8(c * width)
        k = int(rng.choice([3, 5, 7])) if i > 0 else 3
        depth = 1 if i == 0 else int(rng.integers(1, 5))
        for j in range(depth):
            exp = cin if i == 0 else _div8(cin * float(rng.choice([3, 4, 6])))
            feats.append(_block(cin, c, k, exp, s if j == 0 else 1, se, act))
            cin = c
        taps.append(len(feats))
    return nn.Sequential(*feats), taps, cin


def random_mbv3(
    rng: np.random.Generator, *, resolutions: tuple[int, ...] = (160, 192, 224, 256, 288, 320)
) -> tuple[Any, tuple[int, ...]]:
    """A random MobileNetV3-style multi-task net and its input shape (tagging, detection, saliency heads)."""
    import torch.nn.functional as F
    from torch import nn

    width = float(rng.choice([0.5, 0.75, 1.0, 1.25]))
    res = int(rng.choice(resolutions))
    body, taps, cin = _mbv3_body(rng, width)
    det_c = _div8(float(rng.choice([32, 48, 64, 96])) * width)
    det_at = int(rng.choice([2, 3, 4]))
    sal_at = int(rng.choice([1, 2, 3]))
    c_at = [_div8(s[0] * width) for s in _MBV3_STAGES]
    tag = nn.Sequential(
        _conv(cin, _div8(6 * cin), 1, act="hswish"),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(_div8(6 * cin), 1024),
        nn.Hardswish(),
        nn.Linear(1024, 12),
    )
    det = nn.Sequential(
        _conv(c_at[det_at], c_at[det_at], 3, groups=c_at[det_at]),
        _conv(c_at[det_at], det_c, 1),
        _conv(det_c, det_c, 3, groups=det_c),
        _conv(det_c, det_c, 1),
    )
    heat, box = nn.Conv2d(det_c, 12, 1), nn.Conv2d(det_c, 4, 1)
    sal = nn.Sequential(_conv(c_at[sal_at], 32, 1), _conv(32, 32, 3), nn.Conv2d(32, 1, 1))
    stops = (taps[det_at], taps[sal_at])

    def forward(x: Any, body: Any, tag: Any, det: Any, heat: Any, box: Any, sal: Any) -> dict[str, Any]:
        outs = {}
        for i, layer in enumerate(body):
            x = layer(x)
            if i + 1 == stops[0]:
                d = det(x)
                outs["det_heatmap"], outs["det_box"] = heat(d), box(d)
            if i + 1 == stops[1]:
                outs["saliency"] = F.interpolate(sal(x), scale_factor=2.0)
        outs["tags"] = tag(x)
        return outs

    return _Op.make(forward, body, tag, det, heat, box, sal), (1, 3, res, res)


# ----------------------------------------------------------------------------------------------------------
# random MobileNet-like CNNs outside any search space

#: Activations ``random_cnn`` draws from, by name (torch modules; ReLU6 records as ``hardtanh``).
ACTIVATIONS = ("relu", "relu6", "hswish", "silu")
#: Input resolutions ``random_cnn`` draws from: small ones (where fixed per-op costs dominate) to large.
CNN_RESOLUTIONS = (64, 80, 96, 112, 128, 160, 192, 224, 256)


def _act(name: str) -> Any:
    from torch import nn

    return {"relu": nn.ReLU, "relu6": nn.ReLU6, "hswish": nn.Hardswish, "silu": nn.SiLU}[name](inplace=True)


def _cba(cin: int, cout: int, k: int, s: int = 1, groups: int = 1, act: str | None = None) -> Any:
    """Conv, batch norm and an optional activation (any widths, odd ones included)."""
    from torch import nn

    layers = [nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(_act(act))
    return nn.Sequential(*layers)


def _cnn_modules() -> dict[str, Any]:
    """The module classes of ``random_cnn`` (built once, on first use: torch is imported lazily)."""
    # long: four short nn.Module classes, defined together in here so that torch is imported on first use
    if _CNN:
        return _CNN
    import torch
    import torch.nn.functional as F
    from torch import nn

    class SqueezeExcite(nn.Module):
        def __init__(self, c: int, mid: int, act: str, gate: str) -> None:
            super().__init__()
            self.reduce, self.expand = nn.Conv2d(c, mid, 1), nn.Conv2d(mid, c, 1)
            self.act = _act(act)
            self.gate = nn.Hardsigmoid() if gate == "hsigmoid" else nn.Sigmoid()

        def forward(self, x: Any) -> Any:
            return x * self.gate(self.expand(self.act(self.reduce(x.mean((2, 3), keepdim=True)))))

    class InvertedResidual(nn.Module):
        def __init__(self, cin: int, cout: int, *, k: int, s: int, mid: int, act: str, se: Any) -> None:
            super().__init__()
            self.expand = _cba(cin, mid, 1, act=act) if mid != cin else nn.Identity()
            self.dw = _cba(mid, mid, k, s, groups=mid, act=act)
            self.se = se if se is not None else nn.Identity()
            self.project = _cba(mid, cout, 1)
            self.residual = s == 1 and cin == cout

        def forward(self, x: Any) -> Any:
            y = self.project(self.se(self.dw(self.expand(x))))
            return x + y if self.residual else y

    class DenseHead(nn.Module):
        """Reduce a deep feature, upsample it, merge an earlier one (add or cat), then predict per pixel."""

        def __init__(self, c_deep: int, c_skip: int, mid: int, out: int, *, merge: str, mode: str) -> None:
            super().__init__()
            self.merge, self.mode = merge, mode
            self.reduce = _cba(c_deep, mid, 1, act="relu")
            self.skip = _cba(c_skip, mid, 1, act="relu")
            self.fuse = _cba(2 * mid if merge == "cat" else mid, mid, 3, act="relu")
            self.out = nn.Conv2d(mid, out, 1)

        def forward(self, deep: Any, skip: Any) -> Any:
            y = self.reduce(deep)
            kw = {"align_corners": False} if self.mode == "bilinear" else {}
            y = F.interpolate(y, size=skip.shape[-2:], mode=self.mode, **kw)
            s = self.skip(skip)
            y = torch.cat([y, s], 1) if self.merge == "cat" else y + s
            return F.interpolate(self.out(self.fuse(y)), scale_factor=2.0, mode=self.mode, **kw)

    class MultiHeadCNN(nn.Module):
        def __init__(self, stem: Any, blocks: list, taps: dict, heads: dict) -> None:
            super().__init__()
            self.stem, self.blocks = stem, nn.ModuleList(blocks)
            self.taps = taps  # head name -> (block index of the deep feature, of the skip feature or -1)
            self.heads = nn.ModuleDict(heads)

        def forward(self, x: Any) -> dict[str, Any]:
            feats = []
            x = self.stem(x)
            for block in self.blocks:
                x = block(x)
                feats.append(x)
            outs = {}
            for name, (deep, skip) in self.taps.items():
                if skip < 0:
                    outs[name] = self.heads[name](feats[deep])
                else:
                    outs[name] = self.heads[name](feats[deep], feats[skip])
            return outs

    _CNN.update(se=SqueezeExcite, block=InvertedResidual, dense=DenseHead, net=MultiHeadCNN)
    return _CNN


_CNN: dict[str, Any] = {}


def random_cnn(
    rng: np.random.Generator, *, resolutions: tuple[int, ...] = CNN_RESOLUTIONS
) -> tuple[Any, tuple[int, ...], dict[str, Any]]:
    """A random MobileNet-like multi-head CNN outside any search space: ``(model, input_shape, traits)``.

    Plain torch: a stem, 4-6 stages of inverted-residual blocks with kernels 3/5/7, any expansion (1-6.5,
    rounded to an integer width), squeeze-excite on any block (hard-sigmoid or sigmoid gate),
    ReLU/ReLU6/h-swish/SiLU per block, widths not rounded to multiples of 8; heads: a pooled classifier
    (1x1 conv, global pool, two linear layers), an upsampling dense head (reduce, upsample to an earlier
    feature, add or cat it, 3x3 conv, predict, upsample x2; nearest or bilinear) and a small box head, each
    branching at its own depth. ``traits`` records what was drawn (tests check the variety).
    """
    C = _cnn_modules()
    res = int(rng.choice(resolutions))
    c = int(rng.integers(8, 33))
    stem_act = str(rng.choice(ACTIVATIONS))
    stem = _cba(3, c, 3, 2, act=stem_act)
    traits: dict[str, Any] = {
        "resolution": res,
        "kernels": set(),
        "acts": {stem_act},
        "se": 0,
        "blocks": 0,
        "expansions": [],
        "widths": [c],
    }
    blocks, stage_end = _cnn_stages(rng, c, traits)
    c = traits["widths"][-1]
    widths = traits["widths"][1:]
    classifier = _cnn_classifier(rng, c)
    dense, deep, skip, merge, mode = _cnn_dense_head(rng, widths, stage_end)
    box, box_at = _cnn_box_head(rng, widths, stage_end)
    taps = {"classes": (len(blocks) - 1, -1), "dense": (deep, skip), "boxes": (box_at, -1)}
    model = C["net"](stem, blocks, taps, {"classes": classifier, "dense": dense, "boxes": box})
    traits.update(
        upsample=mode, merge=merge, heads=tuple(taps), branch_depths=(deep, box_at, len(blocks) - 1)
    )
    traits["blocks"] = len(blocks)
    return model.eval(), (1, 3, res, res), traits


def _cnn_stages(rng: np.random.Generator, c: int, traits: dict[str, Any]) -> tuple[list[Any], list[int]]:
    """``random_cnn``'s 4-6 stages of 1-3 blocks after a ``c``-channel stem: ``(blocks, stage_end)``.

    ``stage_end`` holds each stage's last block index; what each block draws is added to ``traits``.
    """
    C = _cnn_modules()
    blocks, stage_end = [], []
    width = float(c)
    for i in range(int(rng.integers(4, 7))):
        width *= float(rng.uniform(1.2, 2.0))
        cout = max(8, int(round(width)))
        k = int(rng.choice([3, 5, 7]))
        for j in range(int(rng.integers(1, 4))):
            e = float(rng.uniform(1.0, 6.5))
            mid = int(round(c * e)) if e > 1.2 else c  # below 1.2: no expansion conv
            act = str(rng.choice(ACTIVATIONS))
            se = None
            if rng.random() < 0.4:
                gate = str(rng.choice(["hsigmoid", "sigmoid"]))
                se = C["se"](mid, max(4, int(round(mid / float(rng.choice([4, 6, 8]))))), act, gate)
            stride = 2 if j == 0 and i < 4 else 1
            blocks.append(C["block"](c, cout, k=k, s=stride, mid=mid, act=act, se=se))
            traits["kernels"].add(k)
            traits["acts"].add(act)
            traits["se"] += se is not None
            traits["expansions"].append(mid / c)
            traits["widths"].append(cout)
            c = cout
        stage_end.append(len(blocks) - 1)
    return blocks, stage_end


def _cnn_classifier(rng: np.random.Generator, c: int) -> Any:
    """The pooled classifier on the last ``c``-channel feature: 1x1 conv, global pool, two linear layers."""
    from torch import nn

    hidden = int(rng.integers(200, 1281))
    head_act = str(rng.choice(ACTIVATIONS))
    feat = int(round(c * float(rng.uniform(2.0, 6.0))))
    return nn.Sequential(
        _cba(c, feat, 1, act=head_act),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(feat, hidden),
        _act(head_act),
        nn.Linear(hidden, int(rng.integers(5, 1001))),
    )


def _cnn_dense_head(
    rng: np.random.Generator, widths: list[int], stage_end: list[int]
) -> tuple[Any, int, int, str, str]:
    """The upsampling dense head: ``(head, deep, skip, merge, mode)``, reading block ``deep`` (the end of a
    middle stage) and merging block ``skip`` (the stage end before it) by ``merge`` after ``mode`` upsampling.
    """
    deep = int(rng.choice(stage_end[1:-1])) if len(stage_end) > 2 else stage_end[-1]
    skip = max(s for s in stage_end if s < deep) if any(s < deep for s in stage_end) else 0
    skip = min(skip, deep - 1) if deep > 0 else 0
    merge, mode = str(rng.choice(["add", "cat"])), str(rng.choice(["nearest", "bilinear"]))
    dense = _cnn_modules()["dense"](
        widths[deep],
        widths[skip],
        int(rng.integers(16, 97)),
        int(rng.integers(1, 20)),
        merge=merge,
        mode=mode,
    )
    return dense, deep, skip, merge, mode


def _cnn_box_head(rng: np.random.Generator, widths: list[int], stage_end: list[int]) -> tuple[Any, int]:
    """The small box head at the end of a stage past the first: ``(head, block index it reads)``."""
    from torch import nn

    box_at = int(rng.choice(stage_end[1:]))
    box_c = int(rng.integers(24, 129))
    box = nn.Sequential(
        _cba(widths[box_at], widths[box_at], 3, groups=widths[box_at], act="relu"),
        _cba(widths[box_at], box_c, 1, act="relu"),
        nn.Conv2d(box_c, 4 + int(rng.integers(1, 21)), 1),
    )
    return box, box_at

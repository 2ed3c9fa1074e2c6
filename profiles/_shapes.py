"""Shape inference for the tracer: the output shape of an expensive op (convolution, linear, broadcast
arithmetic, pooling, interpolation, cat) worked out from its arguments without running it, and an
``input_shape`` argument (``(B, C, H, W)``, ``(C, H, W)`` or a resolution) read into a tuple."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from profiles._errors import ProfileError

__all__ = ["fast_shape", "parse_input_shape"]


def parse_input_shape(input_shape: Any) -> tuple[int, ...]:
    """An ``input_shape`` argument as a tuple of positive ints with a batch dimension first."""
    if isinstance(input_shape, int):
        return (1, 3, input_shape, input_shape)
    try:
        shape = tuple(int(s) for s in input_shape)
    except (TypeError, ValueError) as exc:
        raise ProfileError(
            f"input_shape must be a tuple of ints like (1, 3, 224, 224), but got {input_shape!r}"
        ) from exc
    if len(shape) == 3:
        shape = (1, *shape)
    if len(shape) < 2 or any(s <= 0 for s in shape):
        raise ProfileError(
            f"input_shape must be positive ints like (1, 3, 224, 224), but got {input_shape!r}"
        )
    return shape


def _conv_out(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _tuple(v: Any, n: int) -> tuple[int, ...]:
    return tuple(int(x) for x in v) if isinstance(v, list | tuple) else (int(v),) * n


#: Element-wise ops whose output shape is the broadcast of their two operands' shapes.
_BROADCAST_OPS = frozenset(
    ("add", "sub", "mul", "div", "true_divide", "truediv", "radd", "rsub", "rmul", "rtruediv")
)


def fast_shape(name: str, cls: str, args: tuple, kwargs: dict) -> tuple[int, ...] | None:
    """The output shape of an expensive op, computed without running it (None: run the op for real)."""
    import torch

    x = args[0] if args else kwargs.get("input")
    if not isinstance(x, torch.Tensor):
        return None

    def arg(i: int, key: str, default: Any) -> Any:
        return kwargs.get(key, args[i] if len(args) > i else default)

    if cls == "conv" and not name.startswith("conv_transpose") and name != "convolution":
        return _conv_shape(x, arg)
    if cls in ("bn", "act") and name not in ("softmax", "log_softmax", "prelu"):
        return tuple(x.shape)
    if cls == "linear" and name == "linear":
        w = arg(1, "weight", None)
        if x.shape[-1] != w.shape[1]:
            raise RuntimeError(f"linear weight {tuple(w.shape)} cannot multiply input {tuple(x.shape)}")
        return (*x.shape[:-1], w.shape[0])
    if cls == "eltwise" and name in _BROADCAST_OPS:
        shapes = [tuple(t.shape) for t in (args[:2]) if isinstance(t, torch.Tensor)]
        return tuple(torch.broadcast_shapes(*shapes))
    if (
        name in ("avg_pool2d", "max_pool2d")
        and x.dim() == 4
        and not arg(4 if name == "avg_pool2d" else 5, "ceil_mode", False)
    ):
        return _pool_shape(name, x, arg)
    if name == "adaptive_avg_pool2d":
        out = _tuple(arg(1, "output_size", 1), 2) if arg(1, "output_size", 1) is not None else (None, None)
        return (*x.shape[:2], *(x.shape[2 + i] if o is None else o for i, o in enumerate(out)))
    if name == "interpolate" and x.dim() == 4:
        return _interpolate_shape(x, arg)
    if cls == "cat" and name in ("cat", "concat", "concatenate"):
        return _cat_shape(args, kwargs, arg)
    return None


def _conv_shape(x: Any, arg: Callable[[int, str, Any], Any]) -> tuple[int, ...] | None:
    """A (non-transposed) convolution's output shape; None for string padding (``"same"``: run it)."""
    w = arg(1, "weight", None)
    n = w.dim() - 2
    pad = arg(4, "padding", 0)
    if isinstance(pad, str):
        return None
    groups = int(arg(6, "groups", 1))
    if x.dim() != n + 2 or x.shape[1] != w.shape[1] * groups:
        raise RuntimeError(
            f"conv weight {tuple(w.shape)} (groups={groups}) expects {w.shape[1] * groups} input "
            f"channels, but got input {tuple(x.shape)}"
        )
    st, pd, dl = _tuple(arg(3, "stride", 1), n), _tuple(pad, n), _tuple(arg(5, "dilation", 1), n)
    spatial = tuple(_conv_out(x.shape[2 + i], w.shape[2 + i], st[i], pd[i], dl[i]) for i in range(n))
    return (x.shape[0], w.shape[0], *spatial)


def _pool_shape(name: str, x: Any, arg: Callable[[int, str, Any], Any]) -> tuple[int, ...]:
    """The output shape of ``avg_pool2d`` or ``max_pool2d`` (floor mode) on a 4-d input."""
    k = _tuple(arg(1, "kernel_size", 1), 2)
    st = arg(2, "stride", None)
    st = k if st in (None, [], ()) else _tuple(st, 2)
    pd = _tuple(arg(3, "padding", 0), 2)
    dl = (1, 1) if name == "avg_pool2d" else _tuple(arg(4, "dilation", 1), 2)
    return (*x.shape[:2], *(_conv_out(x.shape[2 + i], k[i], st[i], pd[i], dl[i]) for i in range(2)))


def _interpolate_shape(x: Any, arg: Callable[[int, str, Any], Any]) -> tuple[int, ...] | None:
    """``interpolate``'s output shape on a 4-d input from its size or scale factor (None: run it instead)."""
    size, scale = arg(1, "size", None), arg(2, "scale_factor", None)
    if size is not None:
        return (*x.shape[:2], *_tuple(size, 2))
    if scale is not None and not arg(5, "recompute_scale_factor", None):
        sc = scale if isinstance(scale, list | tuple) else (scale, scale)
        return (*x.shape[:2], *(int(math.floor(x.shape[2 + i] * float(sc[i]))) for i in range(2)))
    return None


def _cat_shape(args: tuple, kwargs: dict, arg: Callable[[int, str, Any], Any]) -> tuple[int, ...] | None:
    """``cat``'s output shape (empty 1-d tensors skipped, as torch does); None when nothing is left."""
    import torch

    seq = args[0] if args else kwargs.get("tensors", ())
    ts = [t for t in seq if isinstance(t, torch.Tensor) and (t.numel() or t.dim() > 1)]
    if not ts:
        return None
    d = arg(1, "dim", 0) % ts[0].dim()
    shape = list(ts[0].shape)
    shape[d] = sum(t.shape[d] for t in ts)
    return tuple(shape)

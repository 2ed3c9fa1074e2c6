"""Recording a model's forward as :class:`Node` s: under a ``TorchFunctionMode``, every top-level torch op
(convolutions, norms, activations, pooling, interpolation, arithmetic, cat, reshapes) becomes a node with its
shapes, FLOPs, weights, layer attributes and the nodes that produced its inputs. Unless timed, expensive ops
are not computed: a tensor of their output shape (:mod:`profiles._shapes`) stands in, while cheap ops and
views run for real. Any forward works: tensor, tuple or dict outputs, control flow, functional or module
layers."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from profiles._schema import OP_CLASSES
from profiles._shapes import fast_shape

__all__ = ["Node", "Recorder", "flat_outputs", "restore_training", "run_recorded", "set_eval"]


_CLASS_OF: dict[str, str] = {}
for _cls, _names in {
    "conv": "conv1d conv2d conv3d conv_transpose1d conv_transpose2d conv_transpose3d convolution",
    "bn": "batch_norm",
    "linear": "linear matmul mm addmm bmm einsum",
    "act": "relu relu6 hardtanh hardswish hardsigmoid silu sigmoid tanh gelu leaky_relu elu mish softplus "
    "clamp clip clamp_min clamp_max softmax log_softmax prelu selu celu",
    "pool": "avg_pool1d avg_pool2d avg_pool3d max_pool1d max_pool2d max_pool3d max_pool2d_with_indices "
    "lp_pool2d",
    "gpool": "adaptive_avg_pool1d adaptive_avg_pool2d adaptive_max_pool2d adaptive_max_pool2d_with_indices "
    "mean amax amin sum",
    "upsample": "interpolate upsample upsample_nearest2d upsample_bilinear2d pixel_shuffle pixel_unshuffle",
    "eltwise": "add sub mul div true_divide truediv iadd isub imul itruediv idiv radd rsub rmul rtruediv "
    "maximum minimum where pow neg abs exp sqrt rsqrt square addcmul",
    "cat": "cat concat concatenate stack hstack vstack",
    "reshape": "view reshape flatten unflatten permute transpose contiguous squeeze unsqueeze expand "
    "expand_as split chunk narrow getitem t unbind select to float half clone detach dropout dropout2d "
    "identity type_as view_as movedim flip repeat pad constant_pad_nd",
}.items():
    for _n in _names.split():
        _CLASS_OF[_n] = _cls
_CLASS_INDEX = {c: i for i, c in enumerate(OP_CLASSES)}
#: FLOPs per element of an activation (others: 1), counting an exponential as 8 (a vectorised polynomial):
#: relu max; relu6 / hardtanh min + max; hardsigmoid add, scale, min, max; hardswish that and a multiply;
#: sigmoid exp, add, divide; silu that and a multiply. Measured here on one core at 94k elements (in L2):
#: ReLU 0.12 ns per element, ReLU6 0.13, hard-sigmoid 0.22, h-swish 0.24, sigmoid 0.45, SiLU 0.48.
_ACT_FLOPS = {
    "relu": 1,
    "relu6": 2,
    "hardtanh": 2,
    "clamp": 2,
    "clip": 2,
    "leaky_relu": 2,
    "prelu": 2,
    "hardsigmoid": 4,
    "hardswish": 5,
    "sigmoid": 10,
    "tanh": 10,
    "elu": 10,
    "selu": 11,
    "celu": 10,
    "softplus": 11,
    "silu": 11,
    "gelu": 12,
    "softmax": 11,
    "log_softmax": 12,
    "mish": 22,
}
#: torch functions that never produce graph nodes (shape queries, dtype checks, ...).
_IGNORED = {
    "size",
    "dim",
    "numel",
    "shape",
    "dtype",
    "device",
    "is_contiguous",
    "__get__",
    "__len__",
    "item",
    "tolist",
}
_ALIASING = {
    "view",
    "reshape",
    "flatten",
    "unflatten",
    "squeeze",
    "unsqueeze",
    "expand",
    "expand_as",
    "t",
    "permute",
    "transpose",
    "getitem",
    "select",
    "narrow",
    "detach",
    "dropout",
    "dropout2d",
    "identity",
    "view_as",
    "movedim",
    "split",
    "chunk",
    "unbind",
    "contiguous",
}


@dataclass(frozen=True)
class Node:
    """One recorded operation: the torch op, its class, where it ran and what it cost in FLOPs and weights."""

    op: str
    cls: str
    name: str
    in_shapes: tuple[tuple[int, ...], ...]
    out_shape: tuple[int, ...]
    flops: float
    params: int
    inputs: tuple[int, ...]
    weight_tensors: tuple[tuple[int, int], ...] = ()  # (numel, output channels) per weight/bias tensor
    attrs: tuple[tuple[str, Any], ...] = ()
    calls: int = 0  # nn.Module forward calls entered since the previous node (Python overhead in eager torch)

    def attr(self, key: str, default: Any = None) -> Any:
        return dict(self.attrs).get(key, default)


def _op_name(func: Any) -> str:
    name = getattr(func, "__name__", None) or str(func)
    if name.startswith("__") and name.endswith("__"):
        name = name[2:-2]
    return name.strip("_") if name != "__get__" else name


def _tensors(obj: Any, out: list[Any] | None = None) -> list[Any]:
    """Every tensor in ``obj`` (nested lists, tuples and dict values), in order."""
    from torch import Tensor

    out = [] if out is None else out
    if isinstance(obj, Tensor):
        out.append(obj)
    elif isinstance(obj, list | tuple):
        for o in obj:
            if isinstance(o, Tensor):
                out.append(o)
            elif isinstance(o, list | tuple | dict):
                _tensors(o, out)
    elif isinstance(obj, dict):
        _tensors(list(obj.values()), out)
    return out


def flat_outputs(out: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Every tensor in a model's output with a dotted name (keys and indices; ``output`` if it is one)."""
    import torch

    if isinstance(out, torch.Tensor):
        return [(prefix or "output", out)]
    if isinstance(out, dict):
        return [kv for k, v in out.items() for kv in flat_outputs(v, f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(out, list | tuple):
        return [
            kv for i, v in enumerate(out) for kv in flat_outputs(v, f"{prefix}.{i}" if prefix else str(i))
        ]
    return []


class Recorder:
    """State shared by the function mode and the module hooks while the model runs once."""

    def __init__(self, params: dict[int, str]) -> None:
        self.params = params  # id(tensor) -> qualified parameter/buffer name
        self.trainable: set[int] = set()  # ids of parameters (not buffers)
        self.token = object()  # marks tensors of this run (a tensor attribute survives; ids may be reused)
        self.nodes: list[Node] = []
        self.scope: list[str] = []
        self.calls = 0  # module forward calls so far (framework overhead on eager runtimes)
        self.calls_seen = 0
        self.seen_weights: set[int] = set()

    def mark(self, t: Any, index: int) -> None:
        t._profiles_node = (self.token, index)

    def node_of(self, t: Any) -> int:
        tag = getattr(t, "_profiles_node", None)
        return tag[1] if tag is not None and tag[0] is self.token else -1

    def record(self, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
        name = _op_name(func)
        if name in _IGNORED:
            return
        outs = _tensors(out)
        if not outs:
            return
        cls = _CLASS_OF.get(name, "other")
        ins = _tensors(args)
        if kwargs:
            _tensors(kwargs, ins)
        acts = [t for t in ins if id(t) not in self.params]
        weights = [t for t in ins if id(t) in self.params]
        if cls == "act" and name in ("hardtanh", "clamp", "clip") and not acts:
            return
        inputs = tuple(sorted({self.node_of(t) for t in acts}))
        in_shapes = tuple(tuple(t.shape) for t in acts)
        out_shape = tuple(outs[0].shape)
        attrs, cls = _attrs(name, cls, args, kwargs, acts, weights, out_shape)
        # running statistics and other buffers are not weights of the converted model (BN folds into the conv)
        fresh = [w for w in weights if id(w) not in self.seen_weights and id(w) in self.trainable]
        self.seen_weights.update(id(w) for w in fresh)
        wt = tuple(
            (int(w.numel()), int(w.shape[0]) if w.dim() else 1) for w in fresh if w.dtype.is_floating_point
        )
        inplace = [self.node_of(a) for a in acts if any(o is a for o in outs)]
        if inplace:
            attrs["alias_of"] = inplace[0]
        elif name in _ALIASING and acts:
            attrs["alias_of"] = self.node_of(acts[0])
        node = Node(
            op=name,
            cls=cls,
            name=self.scope[-1] if self.scope else name,
            in_shapes=in_shapes,
            out_shape=out_shape,
            flops=_flops(name, cls, in_shapes, out_shape, weights, attrs),
            params=sum(n for n, _ in wt),
            inputs=inputs,
            weight_tensors=wt,
            attrs=tuple(sorted(attrs.items())),
            calls=self.calls - self.calls_seen,
        )
        self.calls_seen = self.calls
        index = len(self.nodes)
        self.nodes.append(node)
        for t in outs:
            self.mark(t, index)


def _attrs(
    name: str, cls: str, args: tuple, kwargs: dict, acts: list, weights: list, out_shape: tuple
) -> tuple[dict, str]:
    """Layer attributes the cost model and the fallback rules need; refines conv into pw / dw / gconv."""
    attrs: dict[str, Any] = {}

    def arg(i: int, key: str, default: Any) -> Any:
        return kwargs.get(key, args[i] if len(args) > i else default)

    if cls == "conv":
        w = args[1] if len(args) > 1 else kwargs.get("weight")
        groups = int(arg(6, "groups", 1) if "transpose" not in name else arg(6, "groups", 1))
        dil = arg(5, "dilation", 1) if "transpose" not in name else arg(7, "dilation", 1)
        dil = max(dil) if isinstance(dil, list | tuple) else int(dil)
        kernel = tuple(int(k) for k in w.shape[2:]) if w is not None else ()
        stride = arg(3, "stride", 1)
        attrs.update(
            groups=groups,
            dilation=dil,
            kernel=kernel,
            stride=stride if isinstance(stride, int) else max(stride),
        )
        cin = int(acts[0].shape[1]) if acts else 0
        if groups > 1 and groups == cin:
            cls = "dw"
        elif groups > 1:
            cls = "gconv"
        elif kernel and math.prod(kernel) == 1 and "transpose" not in name:
            cls = "pw"
    elif cls == "pool":
        k = arg(1, "kernel_size", 1)
        s = arg(2, "stride", None) or k
        attrs.update(
            kernel=max(k) if isinstance(k, list | tuple) else int(k),
            stride=max(s) if isinstance(s, list | tuple) else int(s),
        )
    elif cls == "gpool":
        if name.startswith("adaptive") and math.prod(out_shape[2:]) > 1:
            cls = "pool"
            attrs.update(kernel=1, stride=1)
    elif cls == "upsample" and acts and len(out_shape) >= 3:
        attrs.update(scale=max(o / max(1, i) for o, i in zip(out_shape[2:], acts[0].shape[2:], strict=False)))
    elif cls == "eltwise" and len(acts) >= 2 and name in ("mul", "imul", "rmul"):
        attrs.update(broadcast=any(tuple(a.shape) != tuple(out_shape) for a in acts))
    return attrs, cls


def _flops(name: str, cls: str, in_shapes: tuple, out_shape: tuple, weights: list, attrs: dict) -> float:
    out_n = math.prod(out_shape)
    in_n = math.prod(in_shapes[0]) if in_shapes else out_n
    if cls in ("conv", "pw", "dw", "gconv"):
        w = weights[0] if weights else None
        per_out = math.prod(w.shape[1:]) if w is not None else 1
        if "transpose" in name:
            return 2.0 * in_n * (math.prod(w.shape[1:]) if w is not None else 1)
        return 2.0 * out_n * per_out
    if cls == "linear":
        k = in_shapes[0][-1] if in_shapes and in_shapes[0] else 1
        return 2.0 * out_n * k
    if cls == "bn":
        return 2.0 * out_n
    if cls == "pool":
        k = attrs.get("kernel", 1)
        return float(out_n * k * k)
    if cls == "gpool":
        return float(in_n)
    if cls == "act":
        return float(out_n * _ACT_FLOPS.get(name, 1))
    if cls in ("eltwise", "upsample", "other"):
        return float(out_n)
    return 0.0


def _inplace(name: str, cls: str, func: Any, args: tuple, kwargs: dict) -> bool:
    raw = getattr(func, "__name__", "")
    if raw.endswith("_") and not raw.endswith("__"):
        return True
    if raw.startswith("__i") and cls == "eltwise":
        return True
    return cls == "act" and (kwargs.get("inplace") is True or any(a is True for a in args[1:]))


def run_recorded(
    model: Any, x: Any, recorder: Recorder, timed: list[float] | None = None, clock: Any = None
) -> Any:
    """Run ``model`` on ``x`` recording its ops; with ``timed``, run every op for real and time it."""
    import torch
    from torch.overrides import TorchFunctionMode

    class Mode(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
            kwargs = kwargs or {}
            if timed is not None:
                t0 = clock()
                out = func(*args, **kwargs)
                elapsed = clock() - t0
                n = len(recorder.nodes)
                recorder.record(func, args, kwargs, out)
                if len(recorder.nodes) > n:
                    timed.append(elapsed * 1e3)
                return out
            name = _op_name(func)
            cls = _CLASS_OF.get(name)
            out = None
            if cls is not None and cls != "reshape":
                if _inplace(name, cls, func, args, kwargs) and isinstance(args[0], torch.Tensor):
                    out = args[0]
                else:
                    shape = fast_shape(name, cls, args, kwargs)
                    if shape is not None:
                        ref = args[0] if isinstance(args[0], torch.Tensor) else args[0][0]
                        out = torch.empty(shape, dtype=ref.dtype, device=ref.device)
            if out is None:
                out = func(*args, **kwargs)
            recorder.record(func, args, kwargs, out)
            return out

    names = _name_tensors(model, recorder)
    scope = recorder.scope

    def enter(module: Any, args: Any) -> None:
        recorder.calls += 1
        scope.append(names.get(id(module), scope[-1] if scope else ""))

    def leave(module: Any, args: Any, out: Any) -> None:
        scope.pop()

    from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

    handles = [register_module_forward_pre_hook(enter), register_module_forward_hook(leave)]
    try:
        with torch.no_grad(), Mode():
            return model(x)
    finally:
        for h in handles:
            h.remove()


def _name_tensors(model: Any, recorder: Recorder) -> dict[int, str]:
    """Name ``model``'s parameters (also marked trainable) and buffers in ``recorder``; returns module names.

    The returned dict maps ``id(submodule)`` to its qualified name (the root module has none).
    """
    names: dict[int, str] = {}
    for qual, mod in model.named_modules():
        if qual:
            names[id(mod)] = qual
        for k, v in mod._parameters.items():
            if v is not None:
                recorder.params[id(v)] = f"{qual}.{k}"
                recorder.trainable.add(id(v))
        for k, v in mod._buffers.items():
            if v is not None:
                recorder.params[id(v)] = f"{qual}.{k}"
    return names


def set_eval(model: Any) -> list[Any]:
    """Put every module in eval mode; returns those that were training (cheaper than ``model.eval()``)."""
    training = [m for m in model.modules() if m.training]
    for m in training:
        m.__dict__["training"] = False
    return training


def restore_training(training: list[Any]) -> None:
    """Put the modules :func:`set_eval` returned back in training mode."""
    for m in training:
        m.__dict__["training"] = True

"""Extracting a model's op graph once: ``extract_graph(model, input_shape) -> Graph``.

The model runs once on zeros under a ``TorchFunctionMode`` that records every top-level torch operation
(convolutions, norms, activations, pooling, interpolation, arithmetic, cat, reshapes) with its shapes, FLOPs,
weights and the nodes that produced its inputs. Expensive ops are not computed: their output shape is worked
out and a zero tensor of that shape stands in (cheap ops and views run for real), so extraction costs
milliseconds and leaves the model untouched. Any forward works: tensor, tuple or dict outputs, control flow,
functional or module layers.

A :class:`Graph` is plain data (numpy arrays plus a tuple of :class:`Node`), picklable and device-independent;
:func:`profiles.estimate_graph` re-costs it on any profile in well under a millisecond.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from profiles._errors import ProfileError
from profiles._schema import FALLBACK_RULES, OP_CLASSES

__all__ = ["Graph", "Node", "extract_graph", "unaligned"]

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


@dataclass(frozen=True, eq=False)
class Graph:
    """A model's op graph at one input shape, with the per-node arrays the cost model needs."""

    input_shape: tuple[int, ...]
    nodes: tuple[Node, ...]
    outputs: tuple[tuple[str, int], ...]
    model_name: str = ""
    arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    peaks: dict[str, float] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.nodes)

    @property
    def params(self) -> int:
        """Parameter count of the weights the graph uses (each tensor once)."""
        return int(self.arrays["params"].sum())

    @property
    def flops(self) -> float:
        """Total FLOPs (2 x multiply-accumulates for conv / linear)."""
        return float(self.arrays["flops"].sum())


# ----------------------------------------------------------------------------------------------------------
# recording


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


def _flat_outputs(out: Any, prefix: str = "") -> list[tuple[str, Any]]:
    import torch

    if isinstance(out, torch.Tensor):
        return [(prefix or "output", out)]
    if isinstance(out, dict):
        return [kv for k, v in out.items() for kv in _flat_outputs(v, f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(out, list | tuple):
        return [
            kv for i, v in enumerate(out) for kv in _flat_outputs(v, f"{prefix}.{i}" if prefix else str(i))
        ]
    return []


class _Recorder:
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


# ----------------------------------------------------------------------------------------------------------
# arrays for the cost model


def _fusable(nodes: tuple[Node, ...], consumers: list[list[int]]) -> np.ndarray:
    """Nodes a fusing runtime (Core ML) merges into their producer: folded BN, activations after compute."""
    fused = np.zeros(len(nodes), dtype=bool)
    hosts = {"conv", "pw", "dw", "gconv", "linear", "eltwise", "pool", "gpool", "bn"}
    for i, n in enumerate(nodes):
        if n.cls not in ("bn", "act") or len(n.inputs) != 1 or n.inputs[0] < 0:
            continue
        p = n.inputs[0]
        if (nodes[p].cls in hosts or fused[p]) and len(consumers[p]) == 1:
            fused[i] = True
    return fused


def _fallbacks(nodes: tuple[Node, ...]) -> np.ndarray:
    """One boolean column per :data:`FALLBACK_RULES` rule: whether the node trips it."""
    out = np.zeros((len(nodes), len(FALLBACK_RULES)), dtype=bool)
    col = {r: i for i, r in enumerate(FALLBACK_RULES)}
    for i, n in enumerate(nodes):
        if n.cls in ("conv", "pw", "dw", "gconv") and (n.attr("dilation") or 1) > 1:
            out[i, col["dilated_conv"]] = True
        if n.cls == "pool":
            out[i, col["pool_kernel_gt13"]] = (n.attr("kernel") or 1) > 13
            out[i, col["pool_stride_gt2"]] = (n.attr("stride") or 1) > 2
        if n.cls == "upsample" and (n.attr("scale") or 1) > 2:
            out[i, col["upsample_gt2"]] = True
        if n.cls == "eltwise" and n.attr("broadcast"):
            out[i, col["broadcast_mul"]] = True
        if n.cls == "other":
            out[i, col["other"]] = True
    return out


def _buffers(nodes: tuple[Node, ...]) -> np.ndarray:
    """For each node, the node whose output buffer it writes (aliases and in-place ops share a buffer)."""
    root = np.arange(len(nodes))
    for i, n in enumerate(nodes):
        src = n.attr("alias_of", -1)
        if src is not None and src >= 0:
            root[i] = root[src]
    return root


def _coreml_weights(nodes: tuple[Node, ...], fused: np.ndarray) -> dict[str, np.ndarray]:
    """Weight tensors as a Core ML conversion stores them: a BN folded into its conv leaves one bias."""
    numel: list[int] = []
    outch: list[int] = []
    owner: list[int] = []
    for i, n in enumerate(nodes):
        tensors = n.weight_tensors
        if n.cls == "bn" and fused[i]:
            p = nodes[n.inputs[0]]
            has_bias = len(p.weight_tensors) > 1
            tensors = () if has_bias or not n.weight_tensors else ((n.out_shape[1], n.out_shape[1]),)
        for t_numel, t_out in tensors:
            numel.append(t_numel)
            outch.append(t_out)
            owner.append(i)
    return {
        "w_numel": np.array(numel, dtype=float),
        "w_outch": np.array(outch, dtype=float),
        "w_owner": np.array(owner, dtype=np.int64),
    }


def _padded(shape: tuple[int, ...], elems_per_64b: int) -> int:
    if not shape:
        return 1
    w = shape[-1]
    return math.prod(shape[:-1]) * (-(-w // elems_per_64b) * elems_per_64b)


def _peaks(nodes: tuple[Node, ...], outputs: list[int], input_shape: tuple[int, ...]) -> dict[str, float]:
    """Peak live activation elements in execution order: raw, and rows padded to 64 bytes (fp16, int8)."""
    n = len(nodes)
    root = _buffers(nodes)
    death = np.arange(n)
    for i, node in enumerate(nodes):
        for j in node.inputs:
            if j >= 0:
                death[root[j]] = max(death[root[j]], i)
    for j in outputs:
        death[root[j]] = n - 1
    input_death = max([i for i, node in enumerate(nodes) if -1 in node.inputs], default=0)
    peaks = {}
    for key, per in (("raw", 0), ("fp16_pad64", 32), ("int8_pad64", 64)):
        size = np.zeros(n + 1)
        events = np.zeros(n + 2)
        for i, node in enumerate(nodes):
            if root[i] == i:
                s = math.prod(node.out_shape) if per == 0 else _padded(node.out_shape, per)
                events[i] += s
                events[death[i] + 1] -= s
        s_in = math.prod(input_shape) if per == 0 else _padded(input_shape, per)
        events[0] += s_in
        events[input_death + 1] -= s_in
        size = np.cumsum(events)
        peaks[key] = float(size.max()) if n else float(s_in)
    return peaks


def _groups(
    nodes: tuple[Node, ...], outputs: tuple[tuple[str, int], ...], consumers: list[list[int]]
) -> list[str]:
    """For each node, which outputs it feeds: an output name, ``a+b``, or ``shared`` (all of them)."""
    masks = [0] * len(nodes)
    for k, (_, j) in enumerate(outputs):
        masks[j] |= 1 << k
    for i in range(len(nodes) - 1, -1, -1):
        for c in consumers[i]:
            masks[i] |= masks[c]
    full = (1 << len(outputs)) - 1
    names = [o for o, _ in outputs]
    out = []
    for m in masks:
        if m == full and len(outputs) > 1:
            out.append("shared")
        elif m == 0:
            out.append("unused")
        else:
            out.append("+".join(names[k] for k in range(len(names)) if m >> k & 1))
    return out


def _channels(node: Node) -> int:
    """Channels of a node's (N, C, H, W) output; 0 for other ranks (vectors, flattened features)."""
    return int(node.out_shape[1]) if len(node.out_shape) == 4 else 0


def unaligned(graph: Graph, block: int) -> np.ndarray:
    """Per node: whether its feature map's channels are not a multiple of ``block`` (a CPU's SIMD width in
    floats: vectorised kernels run whole channel blocks, and odd counts take slower paths)."""
    ch = graph.arrays.get("channels")
    if ch is None:  # a graph pickled before the array existed
        ch = np.array([_channels(n) for n in graph.nodes], dtype=np.int64)
    return (ch > 0) & (ch % max(1, int(block)) != 0)


def _build(
    input_shape: tuple[int, ...], nodes: tuple[Node, ...], outputs: tuple[tuple[str, int], ...], name: str
) -> Graph:
    n = len(nodes)
    consumers: list[list[int]] = [[] for _ in range(n)]
    for i, node in enumerate(nodes):
        for j in node.inputs:
            if j >= 0:
                consumers[j].append(i)
    alias = np.array(
        [node.cls == "reshape" and node.attr("alias_of") is not None for node in nodes], dtype=bool
    )
    act_in = np.array([sum(math.prod(s) for s in node.in_shapes) for node in nodes], dtype=float)
    act_out = np.array([math.prod(node.out_shape) for node in nodes], dtype=float)
    act = np.where(alias, 0.0, act_in + act_out)
    arrays = {
        "cls": np.array([OP_CLASSES.index(node.cls) for node in nodes], dtype=np.int64),
        "flops": np.array([node.flops for node in nodes], dtype=float),
        "act_elems": act,
        "out_elems": act_out,
        "in_elems": act_in,
        "params": np.array([node.params for node in nodes], dtype=float),
        "fused": _fusable(nodes, consumers),
        "fallback": _fallbacks(nodes),
        "alias": alias,
        "calls": np.array([node.calls for node in nodes], dtype=float),
        "channels": np.array([_channels(node) for node in nodes], dtype=np.int64),
    }
    arrays.update(_coreml_weights(nodes, arrays["fused"]))
    groups = _groups(nodes, outputs, consumers)
    arrays["group"] = np.array(groups, dtype=object)
    peaks = _peaks(nodes, [j for _, j in outputs], input_shape)
    return Graph(
        input_shape=input_shape, nodes=nodes, outputs=outputs, model_name=name, arrays=arrays, peaks=peaks
    )


# ----------------------------------------------------------------------------------------------------------
# public entry point


def _shape(input_shape: Any) -> tuple[int, ...]:
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


def _fast_shape(name: str, cls: str, args: tuple, kwargs: dict) -> tuple[int, ...] | None:
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


def _inplace(name: str, cls: str, func: Any, args: tuple, kwargs: dict) -> bool:
    raw = getattr(func, "__name__", "")
    if raw.endswith("_") and not raw.endswith("__"):
        return True
    if raw.startswith("__i") and cls == "eltwise":
        return True
    return cls == "act" and (kwargs.get("inplace") is True or any(a is True for a in args[1:]))


def _run(model: Any, x: Any, recorder: _Recorder, timed: list[float] | None = None, clock: Any = None) -> Any:
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
                    shape = _fast_shape(name, cls, args, kwargs)
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


def _name_tensors(model: Any, recorder: _Recorder) -> dict[int, str]:
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


def _set_eval(model: Any) -> list[Any]:
    """Put every module in eval mode; returns those that were training (cheaper than ``model.eval()``)."""
    training = [m for m in model.modules() if m.training]
    for m in training:
        m.__dict__["training"] = False
    return training


def _restore(training: list[Any]) -> None:
    for m in training:
        m.__dict__["training"] = True


def time_layers(
    model: Any, input_shape: Any, *, repeats: int = 5, clock: Any = None
) -> tuple[Graph, np.ndarray]:
    """The graph of ``model`` and each node's measured ms (minimum over ``repeats`` real runs).

    Ops run for real, each timed with ``clock`` (default: the thread's CPU time) as it executes inside the
    whole net, so caches are as cold or warm as in a real inference. Used to fit the host profile per op.
    """
    import time as _time

    import torch

    shape = _shape(input_shape)
    clock = clock or _time.thread_time
    training = _set_eval(model)
    best: np.ndarray | None = None
    graph: Graph | None = None
    try:
        for _ in range(repeats + 1):  # the first run warms up
            recorder = _Recorder({})
            x = torch.rand(shape)
            recorder.mark(x, -1)
            times: list[float] = []
            out = _run(model, x, recorder, times, clock)
            t = np.array(times)
            if graph is None:
                flat = _flat_outputs(out)
                outputs = tuple((k, recorder.node_of(v)) for k, v in flat if recorder.node_of(v) >= 0)
                graph = _build(shape, tuple(recorder.nodes), outputs, type(model).__name__)
                continue
            best = t if best is None else np.minimum(best, t)
    finally:
        _restore(training)
    assert graph is not None and best is not None
    return graph, best


def extract_graph(model: Any, input_shape: Any, *, name: str = "") -> Graph:
    """Record ``model``'s graph at ``input_shape`` (``(B, C, H, W)``, ``(C, H, W)`` or a resolution ``R``).

    The model runs once in eval mode on zeros (expensive ops are replaced by their output shape), and its
    training flag is restored afterwards. The result is picklable and
    can be cached and re-costed with :func:`profiles.estimate_graph` on every device.
    """
    import torch

    if not isinstance(model, torch.nn.Module):
        raise ProfileError(f"model must be a torch.nn.Module, but got {type(model).__name__}")
    shape = _shape(input_shape)
    training = _set_eval(model)
    ref = next(iter(model.parameters()), None)
    recorder = _Recorder({})
    x = torch.zeros(shape, device=ref.device if ref is not None else "cpu")
    recorder.mark(x, -1)
    try:
        out = _run(model, x, recorder)
    except (RuntimeError, TypeError, ValueError, IndexError) as exc:
        raise ProfileError(f"model forward failed at input_shape={shape}: {exc}") from exc
    finally:
        _restore(training)
    flat = _flat_outputs(out)
    outputs = tuple((k, recorder.node_of(t)) for k, t in flat if recorder.node_of(t) >= 0)
    if not recorder.nodes or not outputs:
        raise ProfileError(
            f"model {type(model).__name__} produced no recorded operations at input_shape={shape}"
        )
    return _build(shape, tuple(recorder.nodes), outputs, name or type(model).__name__)

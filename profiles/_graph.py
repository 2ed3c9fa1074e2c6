"""A model's op graph: :func:`extract_graph` runs the model once on zeros while :mod:`profiles._trace` records
its ops, and assembles the nodes into a :class:`Graph` with the per-node arrays of
:mod:`profiles._graph_features`. A graph is plain data (numpy arrays plus a tuple of :class:`Node`), picklable
and device-independent; :func:`profiles.estimate_graph` re-costs it on any profile."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from profiles._errors import ProfileError
from profiles._graph_features import (
    activation_peaks,
    channels,
    coreml_weights,
    fallbacks,
    fusable,
    output_groups,
)
from profiles._schema import OP_CLASSES
from profiles._shapes import parse_input_shape
from profiles._trace import Node, Recorder, flat_outputs, restore_training, run_recorded, set_eval

__all__ = ["Graph", "build_graph", "extract_graph", "unaligned"]


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


def unaligned(graph: Graph, block: int) -> np.ndarray:
    """Per node: whether its feature map's channels are not a multiple of ``block`` (a CPU's SIMD width in
    floats: vectorised kernels run whole channel blocks, and odd counts take slower paths)."""
    ch = graph.arrays.get("channels")
    if ch is None:  # a graph pickled before the array existed
        ch = np.array([channels(n) for n in graph.nodes], dtype=np.int64)
    return (ch > 0) & (ch % max(1, int(block)) != 0)


def build_graph(
    input_shape: tuple[int, ...], nodes: tuple[Node, ...], outputs: tuple[tuple[str, int], ...], name: str
) -> Graph:
    """The recorded ``nodes`` as a :class:`Graph`, with the per-node arrays the cost model reads."""
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
        "fused": fusable(nodes, consumers),
        "fallback": fallbacks(nodes),
        "alias": alias,
        "calls": np.array([node.calls for node in nodes], dtype=float),
        "channels": np.array([channels(node) for node in nodes], dtype=np.int64),
    }
    arrays.update(coreml_weights(nodes, arrays["fused"]))
    groups = output_groups(nodes, outputs, consumers)
    arrays["group"] = np.array(groups, dtype=object)
    peaks = activation_peaks(nodes, [j for _, j in outputs], input_shape)
    return Graph(
        input_shape=input_shape, nodes=nodes, outputs=outputs, model_name=name, arrays=arrays, peaks=peaks
    )


def extract_graph(model: Any, input_shape: Any, *, name: str = "") -> Graph:
    """Record ``model``'s graph at ``input_shape`` (``(B, C, H, W)``, ``(C, H, W)`` or a resolution ``R``).

    The model runs once in eval mode on zeros (expensive ops are replaced by their output shape), and its
    training flag is restored afterwards. The result is picklable and
    can be cached and re-costed with :func:`profiles.estimate_graph` on every device.
    """
    import torch

    if not isinstance(model, torch.nn.Module):
        raise ProfileError(f"model must be a torch.nn.Module, but got {type(model).__name__}")
    shape = parse_input_shape(input_shape)
    training = set_eval(model)
    ref = next(iter(model.parameters()), None)
    recorder = Recorder({})
    x = torch.zeros(shape, device=ref.device if ref is not None else "cpu")
    recorder.mark(x, -1)
    try:
        out = run_recorded(model, x, recorder)
    except (RuntimeError, TypeError, ValueError, IndexError) as exc:
        raise ProfileError(f"model forward failed at input_shape={shape}: {exc}") from exc
    finally:
        restore_training(training)
    flat = flat_outputs(out)
    outputs = tuple((k, recorder.node_of(t)) for k, t in flat if recorder.node_of(t) >= 0)
    if not recorder.nodes or not outputs:
        raise ProfileError(
            f"model {type(model).__name__} produced no recorded operations at input_shape={shape}"
        )
    return build_graph(shape, tuple(recorder.nodes), outputs, name or type(model).__name__)

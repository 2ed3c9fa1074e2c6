"""Per-node features of a traced graph that the cost model reads: the nodes a fusing runtime (Core ML) merges
into their producer, the Neural Engine fallback rules each node trips, weight tensors as a Core ML conversion
stores them, peak live activations (raw and in 64-byte rows), the outputs each node feeds, and channels."""

from __future__ import annotations

import math

import numpy as np

from profiles._schema import FALLBACK_RULES
from profiles._trace import Node

__all__ = ["activation_peaks", "channels", "coreml_weights", "fallbacks", "fusable", "output_groups"]


def fusable(nodes: tuple[Node, ...], consumers: list[list[int]]) -> np.ndarray:
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


def fallbacks(nodes: tuple[Node, ...]) -> np.ndarray:
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


def coreml_weights(nodes: tuple[Node, ...], fused: np.ndarray) -> dict[str, np.ndarray]:
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


def activation_peaks(
    nodes: tuple[Node, ...], outputs: list[int], input_shape: tuple[int, ...]
) -> dict[str, float]:
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


def output_groups(
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


def channels(node: Node) -> int:
    """Channels of a node's (N, C, H, W) output; 0 for other ranks (vectors, flattened features)."""
    return int(node.out_shape[1]) if len(node.out_shape) == 4 else 0

"""K-means palettization: the LUT and indices of a tensor's fp16 values, as coremltools computes them.

For N <= ``COREML_KMEANS_MAX_BITS`` bits this is coremltools' own clustering (the one
``palettize_weights(mode="kmeans")`` runs: exact 1-D k-means for >= 10,000 elements, scikit-learn's seeded
k-means++ below), so LUT and indices equal coremltools'; for pal6/pal8 it is a faster weighted Lloyd k-means
(``kmeans_lut`` gives the gap to the optimum). ``palettize`` applies it per tensor or per group of output
channels; the exporter stores exactly these values as a ``constexpr_lut_to_dense`` LUT.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

__all__ = ["COREML_KMEANS_MAX_BITS", "coreml_kmeans_lut", "kmeans_lut", "lloyd_lut", "palettize"]

COREML_KMEANS_MAX_BITS = 4
"""Palettes of at most this many bits are clustered by coremltools' own k-means (``coreml_kmeans_lut``);
wider ones (pal6, pal8) by ``lloyd_lut``, which costs 3-5x less there (see ``kmeans_lut``)."""


def kmeans_lut(values: np.ndarray, nbits: int, *, iterations: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Palettize ``values`` to ``2**nbits`` levels: ``(lut float16 [2**nbits], indices uint8 [values.size])``.

    The dequantized values are ``lut[indices]``. Which clustering runs (timed on one thread over every
    palettized tensor of the subnet ``default_space(12).sample(random.Random(3))`` extracted from the
    trained ``runs/search-10ms/supernet.safetensors``: 37 tensors, 11 of >= 10,000 elements; re-measure with
    ``benchmarks/compression.py --kmeans``):

    - ``nbits <= COREML_KMEANS_MAX_BITS`` (pal2, pal4, palN-gK with N <= 4): ``coreml_kmeans_lut``,
      coremltools' own rule, so LUT and indices equal what ``palettize_weights(mode="kmeans")`` computes
      for the same fp16 tensor (or group): the exact weighted 1-D k-means ``kmeans1d`` (the global optimum)
      for >= 10,000 elements, scikit-learn's seeded k-means++ below that. It costs no more than
      ``lloyd_lut`` there: 0.8x for pal2, 0.7x for pal4, 0.6x for pal4-g16 (on randomly initialised
      weights, where Lloyd converges faster, 1.4x for pal4).
    - ``nbits > 4`` (pal6, pal8): ``lloyd_lut``, because coremltools' rule costs 3.1x (pal6) and 5.3x
      (pal8: 10.8 s instead of 2.1 s per model) as much, nearly all of it in ``kmeans1d`` on the large
      tensors (about 0.7 s per tensor at 256 levels; 45 s for the 58 large tensors of the space's
      largest model, randomly initialised). The result is not coremltools'. Squared error above the
      optimum: on tensors of >= 10,000 elements, where coremltools reaches it, +0.9% (pal6) and +3.6%
      (pal8) for these trained weights (+2.3% and +17% for a synthetic Laplace tensor of 12,000 values);
      on smaller tensors +6% and +21%, where coremltools' scikit-learn clustering is +12% and +18%.
    """
    if nbits <= COREML_KMEANS_MAX_BITS:
        return coreml_kmeans_lut(values, nbits)
    return lloyd_lut(values, nbits, iterations=iterations)


def coreml_kmeans_lut(values: np.ndarray, nbits: int) -> tuple[np.ndarray, np.ndarray]:
    """coremltools' k-means palettization of ``values`` (as float16): ``(lut float16, indices uint8)``.

    Calls the function ``palettize_weights(mode="kmeans")`` uses
    (``quantization_utils._get_kmeans_lookup_table_and_weight``): ``kmeans1d.cluster`` over the distinct
    values weighted by their counts for >= 10,000 elements, else scikit-learn
    ``KMeans(2**nbits, init="k-means++", tol=1e-2, n_init=1, random_state=0)`` on the raw values. The LUT
    is cast to float16 and the indices are the cluster labels, as coremltools stores them (unused entries,
    when there are fewer distinct values than levels, are zero).
    """
    logging.getLogger("coremltools").setLevel(logging.ERROR)  # before import: its version chatter
    from coremltools.models.neural_network.quantization_utils import (
        _get_kmeans_lookup_table_and_weight,
    )

    w = np.asarray(values, dtype=np.float16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn: fewer distinct points than clusters
        lut, labels = _get_kmeans_lookup_table_and_weight(nbits, w)
    return np.asarray(lut).reshape(-1).astype(np.float16), np.asarray(labels).reshape(-1).astype(np.uint8)


def lloyd_lut(values: np.ndarray, nbits: int, *, iterations: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Our fast palettization: ``(lut float16 [2**nbits], indices uint8 [values.size])``.

    Weighted 1-D Lloyd k-means over the distinct float16 values (at most 65,536, so the cost does not grow
    with the tensor size), from four initialisations (the quantiles of the values; the quantiles of the
    cube root of their density, the high-resolution optimum for squared error, with the density from a
    histogram and from each value's neighbours; seeded k-means++); the lowest-error result is kept. The
    LUT is rounded to float16 and each value mapped to its nearest entry. With no more distinct values
    than levels the LUT holds them exactly (padded with repeats of the last).
    """
    flat = np.asarray(values, dtype=np.float16).reshape(-1).astype(np.float32)
    k = 1 << nbits
    uniq, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
    if len(uniq) <= k:
        lut = np.concatenate([uniq, np.full(k - len(uniq), uniq[-1], np.float32)]).astype(np.float16)
        return lut, inverse.astype(np.uint8)
    x, w = uniq.astype(np.float64), counts.astype(np.float64)
    best = min((_lloyd(x, w, init, iterations) for init in _inits(x, w, k)), key=lambda r: r[0])
    lut = np.sort(best[1].astype(np.float16))
    lut32 = lut.astype(np.float32)
    nearest = np.searchsorted((lut32[1:] + lut32[:-1]) / 2, uniq)
    return lut, nearest[inverse].astype(np.uint8)


def _inits(x: np.ndarray, w: np.ndarray, k: int) -> list[np.ndarray]:
    """Initial centres: mass quantiles, quantiles of density^(1/3) from a histogram and from the local
    density on the distinct values (which resolves peaked, heavy-tailed trained weights), k-means++."""
    targets = (np.arange(k) + 0.5) / k
    cum = np.cumsum(w)
    by_mass = x[np.searchsorted(cum, targets * cum[-1])]
    hist, edges = np.histogram(x, bins=max(4 * k, 64), weights=w)
    g = np.cbrt(hist / np.diff(edges)) * np.diff(edges)
    cum_g = np.concatenate([[0.0], np.cumsum(g)])
    by_cbrt = np.interp(targets * cum_g[-1], cum_g, edges)
    return [_fill(by_mass, x, k), _fill(by_cbrt, x, k), _local_cbrt(x, w, k, targets), _kmeans_pp(x, w, k)]


def _local_cbrt(x: np.ndarray, w: np.ndarray, k: int, targets: np.ndarray, reach: int = 8) -> np.ndarray:
    """Quantiles of density^(1/3), the density at each distinct value taken over ``reach`` neighbours."""
    n, i = len(x), np.arange(len(x))
    lo, hi = np.clip(i - reach, 0, n - 1), np.clip(i + reach, 0, n - 1)
    cum_w = np.concatenate([[0.0], np.cumsum(w)])
    density = (cum_w[hi + 1] - cum_w[lo]) / np.maximum(x[hi] - x[lo], 1e-12)
    edges = np.concatenate([[x[0]], (x[1:] + x[:-1]) / 2, [x[-1]]])
    cum_g = np.concatenate([[0.0], np.cumsum(np.cbrt(density) * np.diff(edges))])
    return _fill(np.interp(targets * cum_g[-1], cum_g, edges), x, k)


def _kmeans_pp(x: np.ndarray, w: np.ndarray, k: int) -> np.ndarray:
    """Weighted k-means++ seeding with a fixed seed (deterministic), as scikit-learn seeds its k-means.

    Each draw is ``Generator.choice(len(x), p=...)`` done by hand (normalised cumulative sum, one uniform,
    ``searchsorted``): the same random stream and picks as ``choice``, without its checks of ``p``.
    """
    rng = np.random.default_rng(0)

    def draw(p: np.ndarray) -> int:
        cdf = np.cumsum(p)
        return int(np.searchsorted(cdf / cdf[-1], rng.random(), side="right"))

    centres = [x[draw(w)]]
    d2 = (x - centres[0]) ** 2
    for _ in range(k - 1):
        p = w * d2
        if p.sum() <= 0:
            break
        c = x[draw(p)]
        centres.append(c)
        d2 = np.minimum(d2, (x - c) ** 2)
    return _fill(np.asarray(centres), x, k)


def _fill(centres: np.ndarray, x: np.ndarray, k: int) -> np.ndarray:
    centres = np.unique(centres)
    if len(centres) < k:  # heavy ties: spread the missing centres evenly over the range
        centres = np.sort(np.concatenate([centres, np.linspace(x[0], x[-1], k - len(centres) + 2)[1:-1]]))
    return centres


def _lloyd(x: np.ndarray, w: np.ndarray, centres: np.ndarray, iterations: int) -> tuple[float, np.ndarray]:
    k, assign = len(centres), None
    for _ in range(iterations):
        new = np.searchsorted((centres[1:] + centres[:-1]) / 2, x)
        if assign is not None and np.array_equal(new, assign):
            break
        assign = new
        mass = np.bincount(assign, weights=w, minlength=k)
        sums = np.bincount(assign, weights=w * x, minlength=k)
        centres = np.sort(np.where(mass > 0, sums / np.maximum(mass, 1e-300), centres))
    assign = np.searchsorted((centres[1:] + centres[:-1]) / 2, x)
    return float((w * (x - centres[assign]) ** 2).sum()), centres


def palettize(weight: np.ndarray, nbits: int, group_size: int | None) -> np.ndarray:
    w = np.asarray(weight, dtype=np.float16)
    groups = [w] if group_size is None else np.split(w, w.shape[0] // group_size, axis=0)
    parts = []
    for g in groups:
        lut, idx = kmeans_lut(g, nbits)
        parts.append(lut[idx].reshape(g.shape))
    return np.concatenate(parts, axis=0)

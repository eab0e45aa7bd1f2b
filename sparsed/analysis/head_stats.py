"""Observation 1 of the paper, in numbers: how a head's attention map looks, and how much heads differ.

Every statistic here reads block-pooled maps P [H, nq, nk] (``pooling.pooled_attention``: row i is the
mean attention distribution of query block i over key blocks, rows sum to 1); query blocks that a call did
not compute are NaN and ignored.

* ``locality``: the mass a query block puts on key blocks at most one block away (|i - j| <= 1), averaged
  over query blocks: 1 for a sliding-window head.
* ``verticality``: the mass on the 10 % of key blocks that receive the most attention over all query
  blocks (the same columns for every query): 1 for a column ("vertical") head, about 0.1 for a uniform one.
* ``mixedness``: |locality of the prompt's query blocks - locality of the generation's query blocks|, for
  the paper's third kind, window-like in one region and column-like in the other.
* head choice: the most column-like head maximises verticality - locality, the most window-like one
  locality - verticality, the mixed one mixedness (each statistic averaged over the recorded steps).
* head variance: the Jensen-Shannon divergence between two maps (row by row, averaged over query blocks;
  in nats, at most ln 2), between every pair of heads of a layer at the same step, and within a head
  between steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

TOP_COLUMNS = 0.1


def _rows(p: np.ndarray) -> np.ndarray:
    """Boolean [..., nq]: the query blocks that hold data."""
    return np.isfinite(p).all(-1)


def locality(p: np.ndarray, rows: slice | None = None) -> np.ndarray:
    """[H]: mean mass within one block of the diagonal (over the query blocks ``rows``)."""
    nq, nk = p.shape[-2:]
    band = np.abs(np.arange(nq)[:, None] - np.arange(nk)[None, :]) <= 1
    local = np.where(band, p, 0.0).sum(-1)  # [H, nq]
    ok = _rows(p)
    if rows is not None:
        sel = np.zeros(nq, dtype=bool)
        sel[rows] = True
        ok = ok & sel
    return np.array([local[h][ok[h]].mean() if ok[h].any() else np.nan for h in range(p.shape[0])])


def verticality(p: np.ndarray) -> np.ndarray:
    """[H]: mass on the top 10 % of key blocks by mean attention over query blocks."""
    out = []
    for h in range(p.shape[0]):
        m = p[h][_rows(p)[h]]
        col = m.mean(0)
        k = max(1, math.ceil(TOP_COLUMNS * col.shape[0]))
        out.append(np.sort(col)[-k:].sum())
    return np.array(out)


def mixedness(p: np.ndarray, prompt_blocks: int) -> np.ndarray:
    """[H]: |locality over prompt query blocks - locality over generation query blocks|."""
    return np.abs(locality(p, slice(0, prompt_blocks)) - locality(p, slice(prompt_blocks, None)))


@dataclass
class HeadStats:
    locality: np.ndarray  # [layers, heads], averaged over steps
    verticality: np.ndarray
    mixedness: np.ndarray

    def choose(self) -> dict[str, tuple[int, int]]:
        """(layer, head) of the most column-like, the most window-like and the most mixed head (all distinct)."""
        picks: dict[str, tuple[int, int]] = {}
        taken: set[tuple[int, int]] = set()
        for kind, score in (("column", self.verticality - self.locality), ("window", self.locality - self.verticality),
                            ("mixed", self.mixedness)):
            order = np.argsort(-np.nan_to_num(score, nan=-np.inf), axis=None)
            for flat in order:
                lh = tuple(int(v) for v in np.unravel_index(flat, score.shape))
                if lh not in taken:
                    picks[kind] = lh  # type: ignore[assignment]
                    taken.add(lh)  # type: ignore[arg-type]
                    break
        return picks


def head_stats(maps: dict[int, np.ndarray], prompt_blocks: int) -> HeadStats:
    """``maps`` layer -> [steps, H, nq, nk]; statistics per (layer, head), averaged over the steps."""
    layers = sorted(maps)
    loc = np.stack([np.mean([locality(m) for m in maps[la]], 0) for la in layers])
    ver = np.stack([np.mean([verticality(m) for m in maps[la]], 0) for la in layers])
    mix = np.stack([np.mean([mixedness(m, prompt_blocks) for m in maps[la]], 0) for la in layers])
    return HeadStats(loc, ver, mix)


def js_divergence(a: np.ndarray, b: np.ndarray) -> float:
    """Jensen-Shannon divergence of two [nq, nk] maps, row by row (nats), averaged over the rows both hold."""
    ok = _rows(a) & _rows(b)
    p, q = a[ok], b[ok]
    p = p / p.sum(-1, keepdims=True)
    q = q / q.sum(-1, keepdims=True)
    m = 0.5 * (p + q)

    def kl(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(x > 0, x * (np.log(x) - np.log(y)), 0.0).sum(-1)

    return float((0.5 * kl(p, m) + 0.5 * kl(q, m)).mean())


def between_heads(stack: np.ndarray) -> float:
    """Mean JS divergence over every pair of heads of one layer, over steps: ``stack`` [steps, H, nq, nk]."""
    S, H = stack.shape[:2]
    vals = [js_divergence(stack[s, i], stack[s, j]) for s in range(S) for i in range(H) for j in range(i + 1, H)]
    return float(np.mean(vals))


def within_heads(stack: np.ndarray) -> float:
    """Mean JS divergence of a head's map between every pair of steps, over the heads of one layer."""
    S, H = stack.shape[:2]
    vals = [js_divergence(stack[s, h], stack[t, h]) for h in range(H) for s in range(S) for t in range(s + 1, S)]
    return float(np.mean(vals))

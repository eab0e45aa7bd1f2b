"""Warm start across families and sizes: the shipped bidirectional model into a smaller block-diffusion one.

Three changes are bridged, each by a rule from the literature rather than by retraining from scratch:

* **another family** (LLaDA -> SDAR): tensors that share a name and shape are copied; SDAR's q/k norms have
  no counterpart and keep their fresh gains of 1 (the normalised q/k start as the source's directions);
* **fewer layers**: the run's layer ``i`` starts from source layer ``layer_map[i]`` (default: evenly spaced,
  first and last kept, as layer-pruning work keeps the ends of the stack);
* **fewer key/value heads** (GQA): each new K/V head is the mean of the source heads of its group, the
  conversion of Ainslie et al. (2023, "GQA"), so the query heads of a group keep their own source head
  nearest.
"""

from __future__ import annotations

import re

import torch

_LAYER = re.compile(r"^layers\.(\d+)\.")
_KV = re.compile(r"\.(wk|wv)\.(weight|bias)$")


def even_layer_map(n_source: int, n_target: int) -> tuple[int, ...]:
    """``n_target`` source layers, evenly spaced over ``n_source``, the first and last included."""
    if not 1 <= n_target <= n_source:
        raise ValueError(f"cannot map {n_source} source layers onto {n_target}")
    if n_target == 1:
        return (0,)
    return tuple(round(i * (n_source - 1) / (n_target - 1)) for i in range(n_target))


def pool_kv_heads(t: torch.Tensor, n_source: int, n_target: int) -> torch.Tensor:
    """A K or V projection [n_source * hd, ...] -> [n_target * hd, ...]: the mean over each group of heads."""
    if n_source % n_target:
        raise ValueError(f"{n_source} key/value heads do not group into {n_target}")
    hd = t.shape[0] // n_source
    return t.reshape(n_target, n_source // n_target, hd, *t.shape[1:]).mean(1).reshape(n_target * hd, *t.shape[1:])


def warm_start_state(
    theirs: dict[str, torch.Tensor], ours: dict[str, torch.Tensor], *, source_layers: int, target_layers: int,
    source_kv_heads: int, target_kv_heads: int, layer_map: tuple[int, ...] | None = None,
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The run's state dict filled from ``theirs``; returns it and the names left at their fresh values.

    Every source tensor that a run's tensor maps to must fit (after head pooling): a size change the rules
    above do not bridge (another width, vocabulary or FFN) is an error, not a silent partial copy."""
    layer_map = tuple(layer_map) if layer_map else even_layer_map(source_layers, target_layers)
    if len(layer_map) != target_layers or not all(0 <= s < source_layers for s in layer_map):
        raise ValueError(f"layer map {layer_map}: needs {target_layers} source layers in 0..{source_layers - 1}")
    out, fresh = dict(ours), []
    for name, mine in ours.items():
        m = _LAYER.match(name)
        src = name if m is None else f"layers.{layer_map[int(m.group(1))]}." + name[m.end():]
        if src not in theirs:
            fresh.append(name)
            continue
        t = theirs[src]
        if _KV.search(name) and t.shape != mine.shape and source_kv_heads != target_kv_heads:
            t = pool_kv_heads(t, source_kv_heads, target_kv_heads)
        if t.shape != mine.shape:
            raise ValueError(f"{src} {tuple(t.shape)} does not fit {name} {tuple(mine.shape)}: only the layer "
                             "count and the key/value heads may differ from the source")
        out[name] = t.to(mine.dtype)
    return out, fresh

"""A model stand-in that reuses full-canvas forwards across generations, and traces what each step predicted.

The early-step ablation runs one generation per switch step x; Full->Sparse(x) repeats the dense run's
first x steps, Sparse->Full(x) the sparse run's, and two runs whose canvases agree after the switch
compute the same forwards from there on. ``MemoModel`` keys every full-canvas forward by (the canvas
tokens, the attention method's ``signature()``) and returns the stored hidden states on a hit, so each
distinct forward runs once; a method without a signature (or a cached / block-causal call) always runs.
The samplers see a model: every other attribute is the wrapped model's.

It also traces, per generation, the distribution each generation position was committed from: the
log-softmax of the logits predicting it at the step it stopped being a mask (what the sampler decided
with).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import torch

from sparsed.models.transformer import DiffusionLM


@dataclass
class Trace:
    """What one generation committed each generation position from (filled step by step)."""

    prompt_length: int
    mask_id: int
    head: Any  # the model's LM head  # noqa: ANN401
    commit_logp: torch.Tensor | None = None  # [B, G, V] float32
    committed: torch.Tensor | None = None  # [B, G] bool
    keep_canvases: bool = False
    canvases: list[torch.Tensor] = field(default_factory=list)  # the input of every call (keep_canvases)
    forwards: int = 0  # model calls of this generation
    hits: int = 0  # of which reused
    _last_ids: torch.Tensor | None = None
    _last_h: torch.Tensor | None = None  # [B, G, d]: the rows predicting the generation positions

    def observe(self, ids: torch.Tensor, h_gen: torch.Tensor) -> None:
        """A step's canvas and hidden states; what the previous step committed takes the previous step's logits."""
        self.close(ids)
        self._last_ids, self._last_h = ids, h_gen
        if self.keep_canvases:
            self.canvases.append(ids)

    def close(self, ids: torch.Tensor) -> None:
        if self._last_ids is None or self._last_h is None:
            return
        P = self.prompt_length
        new = (self._last_ids[:, P:] == self.mask_id) & (ids[:, P:].to(self._last_ids.device) != self.mask_id)
        if self.commit_logp is None:
            B, G = new.shape
            V = self.head.weight.shape[0]
            self.commit_logp = torch.zeros(B, G, V, dtype=torch.float32, device=new.device)
            self.committed = torch.zeros_like(new)
        if bool(new.any()):
            self.commit_logp[new] = torch.log_softmax(self.head(self._last_h[new]).float(), dim=-1)
        assert self.committed is not None
        self.committed |= new


@dataclass
class MemoModel:
    model: DiffusionLM
    max_bytes: int = 256 * 2**20
    _store: OrderedDict = field(default_factory=OrderedDict)
    _bytes: int = 0
    trace: Trace | None = None
    forwards: int = 0  # forwards actually computed
    hits: int = 0

    def __getattr__(self, name: str) -> Any:  # noqa: ANN401 - the wrapped model's attributes
        return getattr(self.model, name)

    def begin(self, prompt_length: int, keep_canvases: bool = False) -> Trace:
        self.trace = Trace(prompt_length, self.model.args.mask_token_id, self.model.head, keep_canvases=keep_canvases)
        return self.trace

    def end(self, final: torch.Tensor) -> Trace:
        assert self.trace is not None
        trace, self.trace = self.trace, None
        trace.close(final)
        return trace

    def hidden_states(self, input_ids: torch.Tensor, attention: Any = None, attention_mask: torch.Tensor | None = None,  # noqa: ANN401
                      positions: torch.Tensor | None = None, **kw: Any) -> torch.Tensor:  # noqa: ANN401
        key = self._key(input_ids, attention, attention_mask, positions, kw)
        if key is not None and key in self._store:
            self._store.move_to_end(key)
            h = self._store[key]
            self.hits += 1
            if self.trace is not None:
                self.trace.hits += 1
        else:
            h = self.model.hidden_states(input_ids, attention, attention_mask, positions, **kw)
            self.forwards += 1
            if key is not None:
                self._put(key, h)
        if self.trace is not None and kw.get("rows") is None:
            self.trace.forwards += 1
            P, shift = self.trace.prompt_length, 1 if self.model.args.shift_logits else 0
            self.trace.observe(input_ids.clone(), h[:, P - shift : h.shape[1] - shift])
        return h

    def _key(self, ids: torch.Tensor, attention: Any, mask: torch.Tensor | None, positions: torch.Tensor | None,  # noqa: ANN401
             kw: dict[str, Any]) -> Hashable | None:
        sig = getattr(attention, "signature", None)
        tag = sig() if callable(sig) else None
        if tag is None or positions is not None or any(v is not None for v in kw.values()):
            return None
        return (tag, tuple(ids.shape), ids.cpu().numpy().tobytes(),
                None if mask is None else mask.cpu().numpy().tobytes())

    def _put(self, key: Hashable, h: torch.Tensor) -> None:
        size = h.numel() * h.element_size()
        self._store[key] = h
        self._bytes += size
        while self._bytes > self.max_bytes and len(self._store) > 1:
            _, old = self._store.popitem(last=False)
            self._bytes -= old.numel() * old.element_size()

"""LoSA (Xi et al., ICML 2026): locality-aware sparse attention for block-wise diffusion LMs.

No public code exists; this follows ``../shared/papers/losa.md`` (section 5). Per layer, at every cached
step of a block:

1. the *active* tokens are the query rows whose query vector changed most since the reference step
   (mean squared change over heads and head dims): ``losa.active`` of them (default 5) or the top
   ``losa.active_fraction`` of the rows;
2. *stable* tokens reuse their cached prefix-attention output and log-sum-exp;
3. active tokens run Quest selection over the cached (static) keys (``losa.budget`` tokens in pages of
   ``losa.page``) and attend to the union of their pages per K/V head;
4. the in-block (recomputed) keys are attended densely by every token;
5. prefix and in-block parts are merged exactly by log-sum-exp.

The block's first step is dense and fills the cache with every token's exact prefix output and LSE
(the refresh under Fast-dLLM's caches; the first denoising call under block diffusion).

The open questions of the sources (losa.md §15) are settings; defaults are the most plausible reading:

* ``active`` / ``active_fraction``: top-5 tokens (default; [S]'s ablation, [T]) or the top fraction of the
  rows, e.g. 0.5 ([N]).
* ``update``: ``overwrite`` (default, [T]): an active token's sparse result replaces its cache entry;
  ``keep``: the block's first-step values stay (not stated by any source).
* ``reference``: ``previous`` (default, [T]): the change is measured against the previous step's query;
  ``cached``: against the query of the step that wrote the token's cache entry (§15 Q2).
* ``attend``: ``union`` (default, [T]): active queries attend to the whole union; ``own``: each to its own
  pages (§15 Q5).
* ``gqa``: ``per_head`` (default): each query head selects, union per K/V head; ``group_mean``: one
  selection from the group's mean query ([T] offers both).

The change metric is the query vector's (what the attention interface sees, and what [N] and [T] use);
locality is measured per layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from sparsed.attention.base import MethodSettings
from sparsed.attention.cached import StaticSplitMethod
from sparsed.attention.methods.quest import ATTEND, GQA, check_budget, sparse_static
from sparsed.attention.pages import Pages, build_pages
from sparsed.attention.registry import MethodSpec
from sparsed.config_errors import ConfigError, check_choice
from sparsed.facts import ModelFacts

UPDATES = ("overwrite", "keep")
REFERENCES = ("previous", "cached")


@dataclass
class LoSASettings(MethodSettings):
    budget: int = 256  # cached-key tokens per active query (the paper: 128 / 256 / 512 / 1024)
    page: int = 16
    active: int = 5  # active tokens per step (ignored when active_fraction is set)
    active_fraction: float | None = None  # e.g. 0.5: the top half of the query rows
    update: str = "overwrite"
    reference: str = "previous"
    attend: str = "union"
    gqa: str = "per_head"

    def validate(self) -> None:
        check_budget("losa", self.budget, self.page)
        if not isinstance(self.active, int) or isinstance(self.active, bool) or self.active < 1:
            raise ConfigError(f"losa.active={self.active!r} must be a positive number of tokens")
        if self.active_fraction is not None and not 0.0 < self.active_fraction <= 1.0:
            raise ConfigError(f"losa.active_fraction={self.active_fraction} is outside (0, 1]")
        check_choice("losa.update", self.update, UPDATES)
        check_choice("losa.reference", self.reference, REFERENCES)
        check_choice("losa.attend", self.attend, ATTEND)
        check_choice("losa.gqa", self.gqa, GQA)

    def n_active(self, rows: int) -> int:
        if self.active_fraction is not None:
            return max(1, min(rows, math.ceil(self.active_fraction * rows)))
        return min(rows, self.active)


@dataclass
class _BlockState:
    block: int
    out: torch.Tensor  # [B, Hq, n, D] cached prefix-attention output per query row
    lse: torch.Tensor  # [B, Hq, n]
    ref_q: torch.Tensor  # [B, Hq, n, D] the queries changes are measured against
    pages: Pages | None = None


def active_rows(q: torch.Tensor, ref: torch.Tensor, n_active: int) -> torch.Tensor:
    """bool [B, n]: the rows whose query moved most (mean squared change over heads and head dims)."""
    change = (q.float() - ref.float()).pow(2).mean(dim=(1, 3))  # [B, n]
    out = torch.zeros_like(change, dtype=torch.bool)
    out.scatter_(1, change.topk(n_active, dim=-1).indices, True)
    return out


class LoSA(StaticSplitMethod):
    name = "losa"
    wants_block_start_output = True

    def __init__(self, settings: LoSASettings, facts: ModelFacts | None = None) -> None:
        super().__init__()
        settings.validate()
        self.s = settings
        self.state: dict[int, _BlockState] = {}
        self.active_counts: list[int] = []  # active tokens per sparse call (for the locality report)
        self.changes: list[torch.Tensor] = []  # per-token query change of each sparse call (for the figure)
        self.keep_changes = False

    def reset_blocks(self) -> None:
        self.state = {}
        self.active_counts, self.changes = [], []

    def on_block_start(self, layer, q, k, v, key_valid, where, static, out, lse):  # noqa: ANN001, ANN201
        self.state[layer] = _BlockState(where.block, out, lse, q.clone())

    def static_attention(self, layer, q, k, v, key_valid, where, static):  # noqa: ANN001, ANN201 - see base
        st = self.state.get(layer)
        if st is None or st.block != where.block or st.out.shape[2] != q.shape[2]:
            raise RuntimeError("LoSA: a cached step without its block's dense first step")
        if st.pages is None:
            st.pages = build_pages(k, static, self.s.page, key_valid)
        n = q.shape[2]
        act = active_rows(q, st.ref_q, self.s.n_active(n))  # [B, n]
        if self.keep_changes:
            self.changes.append((q.float() - st.ref_q.float()).pow(2).mean(dim=(1, 3)).cpu())
        self.active_counts.append(int(act[0].sum()))
        idx = act.nonzero(as_tuple=True)
        B, Hq, _, D = q.shape
        n_act = int(act.sum(-1).max())
        order = torch.argsort((~act).to(torch.int8), dim=-1, stable=True)[:, :n_act]  # active rows first
        qa = q.gather(2, order[:, None, :, None].expand(B, Hq, n_act, D))
        o_a, lse_a, loaded = sparse_static(qa, k, v, key_valid, st.pages, self.s.budget, self.s.page, self.s.attend,
                                           self.s.gqa)
        out, lse = st.out.clone(), st.lse.clone()
        b_idx = idx[0]
        r_idx = idx[1]
        pos = (act.long().cumsum(-1) - 1)[idx]  # position of each active row inside ``order``
        out[b_idx, :, r_idx] = o_a[b_idx, :, pos].to(out.dtype)
        lse[b_idx, :, r_idx] = lse_a[b_idx, :, pos].to(lse.dtype)
        if self.s.update == "overwrite":
            st.out, st.lse = out, lse
        if self.s.reference == "previous":
            st.ref_q = q.clone()
        elif self.s.update == "overwrite":  # the reference follows the cache entry it was measured for
            st.ref_q = st.ref_q.clone()
            st.ref_q[b_idx, :, r_idx] = q[b_idx, :, r_idx]
        return out, lse, loaded

    def report(self) -> dict:
        rep = super().report()
        rep["active_tokens_mean"] = round(sum(self.active_counts) / len(self.active_counts), 3) if self.active_counts else None
        return rep


METHOD = MethodSpec("losa", LoSASettings, LoSA, "LoSA: stable tokens reuse cached prefix attention, active ones run Quest")

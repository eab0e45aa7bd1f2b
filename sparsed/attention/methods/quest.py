"""Quest adapted to diffusion LMs (LoSA's main baseline): query-aware page selection over the cached prefix.

Per block, the cached (static) keys are cut into pages (``quest.page`` tokens) with channel-wise
min/max bounds (``sparsed.attention.pages``). At every cached step each query scores the pages by the
bound of q·k and keeps its top pages up to ``quest.budget`` tokens; a kernel serving the block's queries
loads the union of their pages per K/V head, and (``quest.attend=union``, default) every query attends to
that union (``own``: each query only to its own pages, Quest's original per-query semantics). The
in-block (recomputed) keys are attended densely, and the block's first step (the cache refresh) is dense.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sparsed.attention.base import MethodSettings
from sparsed.attention.cached import StaticSplitMethod
from sparsed.attention.lse import attention_lse
from sparsed.attention.pages import Pages, build_pages, gather_pages, select_pages, union_per_kv_head, upper_bounds
from sparsed.attention.registry import MethodSpec
from sparsed.config_errors import ConfigError, check_choice
from sparsed.facts import ModelFacts

ATTEND = ("union", "own")
GQA = ("per_head", "group_mean")


def check_budget(node: str, budget: object, page: object) -> None:
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
        raise ConfigError(f"{node}.budget={budget!r} must be a positive number of tokens per query (e.g. 128, 256)")
    if not isinstance(page, int) or isinstance(page, bool) or page < 1:
        raise ConfigError(f"{node}.page={page!r} must be a positive number of tokens per page (Quest: 16)")


@dataclass
class QuestSettings(MethodSettings):
    budget: int = 256  # cached-key tokens per query (the LoSA paper sweeps 128 / 256 / 512 / 1024)
    page: int = 16  # tokens per page (Quest's default)
    attend: str = "union"  # union | own
    gqa: str = "per_head"  # per_head: each query head selects; group_mean: one selection per K/V head group

    def validate(self) -> None:
        check_budget("quest", self.budget, self.page)
        check_choice("quest.attend", self.attend, ATTEND)
        check_choice("quest.gqa", self.gqa, GQA)


def group_queries(q: torch.Tensor, n_kv: int, mode: str) -> torch.Tensor:
    """The queries that score pages: per head, or the mean of each K/V head's query group (repeated)."""
    if mode == "per_head":
        return q
    B, Hq, L, D = q.shape
    mean = q.reshape(B, n_kv, Hq // n_kv, L, D).mean(2, keepdim=True)
    return mean.expand(B, n_kv, Hq // n_kv, L, D).reshape(B, Hq, L, D)


def sparse_static(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_valid: torch.Tensor | None, pages: Pages,
                  budget: int, page: int, attend: str, gqa: str,
                  rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Quest attention of ``q`` over the paged static keys: (out, LSE, keys loaded [B, Hkv]).

    ``rows`` [B, Lq] limits the union to those queries (LoSA's active tokens); the others are ignored.
    """
    n_kv = k.shape[1]
    selected = select_pages(upper_bounds(group_queries(q, n_kv, gqa), pages), budget, page)
    chosen = union_per_kv_head(selected, rows, n_kv)  # [B, Hkv, nP]
    kg, vg, ok, page_of = gather_pages(k, v, pages, chosen, key_valid, page)
    B, Hq, Lq, _ = q.shape
    n_rep = Hq // n_kv
    if attend == "union":
        mask = ok.repeat_interleave(n_rep, dim=1)[:, :, None, :]  # [B, Hq, 1, n]
    else:
        own = selected.gather(3, page_of.repeat_interleave(n_rep, dim=1)[:, :, None, :].expand(-1, -1, Lq, -1))
        mask = own & ok.repeat_interleave(n_rep, dim=1)[:, :, None, :]
    out, lse = attention_lse(q, kg, vg, mask)
    return out, lse, ok.sum(-1).float()


class Quest(StaticSplitMethod):
    name = "quest"

    def __init__(self, settings: QuestSettings, facts: ModelFacts | None = None) -> None:
        super().__init__()
        settings.validate()
        self.s = settings
        self.pages: dict[int, tuple[int, Pages]] = {}  # layer -> (block, pages of its static keys)

    def reset_blocks(self) -> None:
        self.pages = {}

    def _pages(self, layer: int, k: torch.Tensor, key_valid: torch.Tensor | None, block: int,
               static: tuple[tuple[int, int], ...]) -> Pages:
        cached = self.pages.get(layer)
        if cached is None or cached[0] != block:  # static keys change only between blocks
            self.pages[layer] = (block, build_pages(k, static, self.s.page, key_valid))
        return self.pages[layer][1]

    def static_attention(self, layer, q, k, v, key_valid, where, static):  # noqa: ANN001, ANN201 - see base
        pages = self._pages(layer, k, key_valid, where.block, static)
        return sparse_static(q, k, v, key_valid, pages, self.s.budget, self.s.page, self.s.attend, self.s.gqa)


METHOD = MethodSpec("quest", QuestSettings, Quest, "Quest: per-query top pages of the cached prefix, union per K/V head")

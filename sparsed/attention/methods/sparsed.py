"""SparseD: dense attention for the first steps, then a head-specific block pattern computed once and reused.

Schedules (``compat``):

* ``reference`` (the released code): steps ``0 .. int(T*skip)+1`` are dense; the pattern is built from
  the q/k of step ``int(T*skip)+1`` (still a dense step) and used from the next step on.
* ``paper`` (Algorithm 1): the first ``int(T*skip)`` steps are dense and the pattern comes from the last
  of them; with ``skip=0`` it is built from step 0's own q/k and used at step 0 already.

``reuse=false`` recomputes the pattern from the current q/k at every sparse step (Table 2's
"- Sparse Reusing"); ``isolated=false`` replaces the two per-region top-k's by one joint top-k.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from sparsed.attention.base import AttentionMethod, MethodSettings, check_has_sparse_step, pairs
from sparsed.attention.dense_kernels import DENSE_BACKENDS, check_backend_runtime, dense_attention, fa4_module
from sparsed.attention.kernels import SPARSE_KERNELS, block_sparse_attention
from sparsed.attention.padding import left_align, restore_left_padding
from sparsed.attention.registry import MethodSpec
from sparsed.attention.selection import COMPAT_MODES, SelectionRule, select_blocks
from sparsed.config_errors import ConfigError, check_choice
from sparsed.facts import ModelFacts

IMPORTANCE_SCALES = ("head_dim", "num_heads")
# The released code's importance softmax scale per model family (compat=reference, importance_scale=auto):
# its LLaDA path divides by sqrt(num_heads), its Dream path by sqrt(head_dim). Other families: head_dim.
REFERENCE_IMPORTANCE_SCALE = {"llada": "num_heads", "dream": "head_dim"}


def schedule(total_steps: int, skip: float, compat: str) -> tuple[int, int]:
    """(build_step, first_sparse_step) of a ``total_steps`` generation (see the module docstring)."""
    if compat == "reference":
        end = int(total_steps * skip) + 1
        return end, end + 1
    n_dense = int(total_steps * skip)
    return max(n_dense - 1, 0), n_dense


@dataclass
class SparseDSettings(MethodSettings):
    skip: float = 0.2
    select: float = 0.3
    block_size: int = 128
    compat: str = "reference"
    reuse: bool = True
    isolated: bool = True
    # Softmax scale of the importance scores: 1/sqrt(head_dim), or 1/sqrt(num_heads) as the released
    # LLaDA code does. "auto" = what the model's config names for compat=reference, head_dim otherwise.
    importance_scale: str = "auto"
    kernel: str = "flex"
    dense_backend: str = "auto"
    compile: str = "auto"  # auto (compile on CUDA) | true | false

    def validate(self) -> None:
        if not 0.0 < self.select <= 1.0:
            raise ConfigError(f"sparsed.select={self.select} is outside (0, 1]")
        if not 0.0 <= self.skip < 1.0:
            raise ConfigError(f"sparsed.skip={self.skip} is outside [0, 1)")
        bs = self.block_size
        if not isinstance(bs, int) or bs <= 0 or bs & (bs - 1):
            raise ConfigError(f"sparsed.block_size={bs} is not a positive power of two (e.g. 32, 64, 128)")
        check_choice("sparsed.compat", self.compat, COMPAT_MODES)
        check_choice("sparsed.importance_scale", self.importance_scale, ("auto", *IMPORTANCE_SCALES))
        check_choice("sparsed.kernel", self.kernel, SPARSE_KERNELS)
        check_choice("sparsed.dense_backend", self.dense_backend, DENSE_BACKENDS)
        check_choice("sparsed.compile", str(self.compile).lower(), ("auto", "true", "false"))

    def schedule(self, total_steps: int) -> tuple[int, int]:
        return schedule(total_steps, self.skip, self.compat)

    def step_kinds(self, total_steps: int) -> list[str]:
        _, first_sparse = self.schedule(total_steps)
        return ["dense" if i < first_sparse else "sparse" for i in range(total_steps)]

    def check_schedule(self, total_steps: int, where: str = "gen.steps") -> None:
        check_has_sparse_step(self, f"sparsed.skip={self.skip}", total_steps, where)

    def check_runtime(self, device: torch.device) -> None:
        check_backend_runtime("sparsed.dense_backend", self.dense_backend, device)
        if self.kernel == "fa4" and (device.type != "cuda" or fa4_module() is None):
            raise ConfigError("sparsed.kernel=fa4 needs FlashAttention-4 (flash_attn.cute) on a CUDA device, "
                              "not available here; choose one of: flex, sdpa_mask")

    def resolved_scale(self, facts: ModelFacts) -> str:
        """``importance_scale`` with ``auto`` resolved for the model family (the released code's quirk)."""
        if self.importance_scale != "auto":
            return self.importance_scale
        if self.compat != "reference":
            return "head_dim"
        return REFERENCE_IMPORTANCE_SCALE.get(facts.arch, "head_dim")


class SparseD(AttentionMethod):
    name = "sparsed"

    def __init__(self, settings: SparseDSettings, facts: ModelFacts | None = None) -> None:
        super().__init__()
        settings.validate()
        self.s = settings
        facts = facts or ModelFacts()
        self.scale_mode = settings.resolved_scale(facts)
        self.num_heads_for_scale = facts.n_heads
        self.patterns: dict[int, torch.Tensor] = {}
        self.pattern_pairs: dict[int, float] = {}  # attended (query, key) pairs of each layer's pattern

    def reset(self) -> None:
        self.patterns = {}
        self.pattern_pairs = {}

    # -- schedule ----------------------------------------------------------------------------------
    def schedule(self, total_steps: int) -> tuple[int, int]:
        """(build_step, first_sparse_step) for a generation of ``total_steps`` steps."""
        return self.s.schedule(total_steps)

    def _importance_scale(self, head_dim: int) -> float:
        mode = self.scale_mode
        if mode == "num_heads":
            if not self.num_heads_for_scale:
                raise ConfigError("sparsed.importance_scale=num_heads needs the model's head count")
            return 1.0 / math.sqrt(self.num_heads_for_scale)
        return 1.0 / math.sqrt(head_dim)

    def rule(self, head_dim: int) -> SelectionRule:
        return SelectionRule(
            block_size=self.s.block_size, select=self.s.select, compat=self.s.compat,
            isolated=self.s.isolated, scale=self._importance_scale(head_dim),
        )

    def build_pattern(self, q: torch.Tensor, k: torch.Tensor, valid_len: torch.Tensor | None,
                      debug: dict | None = None) -> torch.Tensor:
        info = self.info
        assert info is not None
        prompt = info.prompt_length
        return select_blocks(q, k, prompt, self.rule(q.shape[-1]), valid_len, debug)

    # -- attention ---------------------------------------------------------------------------------
    def attend(self, layer, q, k, v, key_valid):  # noqa: ANN001, ANN201 - see base class
        info, step = self.info, self.step
        if info is None or step is None:
            return self._dense(layer, q, k, v, key_valid)
        build_step, first_sparse = self.schedule(info.total_steps)
        pad = info.pad_counts if info.has_padding else None
        L = q.shape[2]
        valid_len = None if pad is None else (L - pad).to(q.device)
        sparse_now = step >= first_sparse
        build_now = step == build_step or (sparse_now and not self.s.reuse)
        if not build_now and not sparse_now:
            return self._dense(layer, q, k, v, key_valid)
        if pad is not None:
            q, k, v = (left_align(t, pad) for t in (q, k, v))
        if build_now or layer not in self.patterns:
            with self.timed("pattern_build_s", q.device):
                self.patterns[layer] = self.build_pattern(q, k, valid_len)
            # counted once per pattern: a per-step count would synchronise the GPU at every layer
            self.pattern_pairs[layer] = attended_pairs(self.patterns[layer], self.s.block_size, L)
        if sparse_now:
            out = self._sparse(layer, q, k, v, self.patterns[layer], valid_len)
        else:
            out = self._dense(layer, q, k, v, None if valid_len is None else _valid_mask(valid_len, L))
        return out if pad is None else restore_left_padding(out, pad)

    def _dense(self, layer, q, k, v, key_valid):  # noqa: ANN001, ANN202
        n = pairs(q, k)
        self.record(layer, n, n, sparse=False)
        return dense_attention(q, k, v, key_valid, backend=self.s.dense_backend)

    def _sparse(self, layer, q, k, v, grid, valid_len):  # noqa: ANN001, ANN202
        B, H, L, _ = q.shape
        self.record(layer, self.pattern_pairs[layer], B * H * L * L, sparse=True)
        compile_flag = {"auto": None, "true": True, "false": False}[str(self.s.compile).lower()]
        return block_sparse_attention(
            self.s.kernel, q, k, v, grid, self.s.block_size, valid_len, compile=compile_flag
        )


def _valid_mask(valid_len: torch.Tensor, length: int) -> torch.Tensor:
    return torch.arange(length, device=valid_len.device)[None, :] < valid_len[:, None]


def attended_pairs(grid: torch.Tensor, block_size: int, length: int) -> float:
    """Number of (query, key) pairs a block grid lets through, partial edge blocks counted exactly."""
    nb = grid.shape[-1]
    sizes = torch.full((nb,), float(block_size), device=grid.device)
    sizes[-1] = length - (nb - 1) * block_size
    return float(torch.einsum("bhij,i,j->", grid.float(), sizes, sizes))


METHOD = MethodSpec("sparsed", SparseDSettings, SparseD, "SparseD: dense early steps, then a head-specific block pattern")

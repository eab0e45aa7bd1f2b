"""Observation 3 of the paper: sparse attention hurts in the early denoising steps far more than later.

For one prompt and a grid of switch steps x, generations where a sparse rule runs from step x on
(Full->Sparse(x): dense for steps < x) or until step x (Sparse->Full(x): dense from step x on), for two
rules:

* ``token_topk``: every query keeps the top ``ratio`` (30 %) of its keys (the paper's Figure 2, Eq. 2);
* ``sparsed``: SparseD's head-specific block pattern, built by the SparseD method from the dense
  attention of the step before the switch (Algorithm 1: the last dense step; at x = 0, and for
  Sparse->Full, step 0's). With ``compat=reference``, Full->Sparse(int(T*skip)+2) is exactly SparseD with
  that ``skip`` (its released schedule): the accuracy-against-skip counterpart of Figure 6a.

Each generation is compared with the dense one by ``kl``, the mean over generation positions of
KL(dense || run) between the distributions each run committed that position from (nats), and
``mismatch``, the fraction of generated tokens that differ from the dense run's; the caller scores the
answers. ``sensitivity`` is the per-step view: at every step t of the dense run, the mean KL(dense ||
sparse) over the positions still masked, of one forward on that step's canvas (for ``sparsed``, with the
pattern of step t-1). ``memo.MemoModel`` computes every distinct forward once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from sparsed.analysis.fixed_pattern import FixedBlockPattern
from sparsed.analysis.memo import MemoModel, Trace
from sparsed.analysis.pattern_probe import PatternProbe
from sparsed.analysis.switching import StepSwitch
from sparsed.analysis.token_topk import TokenTopK
from sparsed.attention import build_method
from sparsed.attention.base import AttentionMethod
from sparsed.attention.methods.sparsed import SparseD, SparseDSettings
from sparsed.facts import ModelFacts
from sparsed.models.transformer import DiffusionLM
from sparsed.sampling.dispatch import sample

RULES = ("token_topk", "sparsed")
DIRECTIONS = ("full_to_sparse", "sparse_to_full")
DENSE_TAG = "dense"


@dataclass
class SwitchRun:
    rule: str
    direction: str
    x: int
    tokens: list[int]
    kl: float
    mismatch: float
    computed: int  # forwards this generation computed (the rest were reused)
    score: float | None = None  # the answer's score (0-100) when a scorer is given


@dataclass
class PromptAblation:
    steps: int
    xs: list[int]
    dense_tokens: list[int]
    runs: list[SwitchRun]
    sensitivity: dict[str, list[float]]  # rule -> per-step KL on the dense run's canvases
    forwards: int  # forwards computed for this prompt
    calls: int  # model calls the generations made
    dense_score: float | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    def curve(self, rule: str, direction: str, key: str) -> list[Any]:
        by_x = {r.x: getattr(r, key) for r in self.runs if r.rule == rule and r.direction == direction}
        return [by_x[x] for x in self.xs]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def commit_kl(ref: Trace, run: Trace) -> float:
    """Mean over generation positions of KL(ref || run) of the distributions each position was committed from."""
    assert ref.commit_logp is not None and run.commit_logp is not None
    kl = (ref.commit_logp.exp() * (ref.commit_logp - run.commit_logp)).sum(-1)
    return float(kl.mean())


class _Rules:
    """The sparse side of every switch: one object per (rule, pattern), shared by all runs (stateless)."""

    def __init__(self, facts: ModelFacts, probe: PatternProbe, settings: SparseDSettings, ratio: float, steps: int):
        self.facts = facts
        self.topk = TokenTopK(ratio)
        self.patterns = {t: FixedBlockPattern(probe.grid(t), settings.block_size, settings.kernel) for t in range(steps)}
        self.tag = ("sparsed", repr(settings))

    def sparse(self, rule: str, build: int) -> tuple[AttentionMethod, tuple]:
        if rule == "token_topk":
            return self.topk, ("token_topk", self.topk.ratio)
        return self.patterns[build], (*self.tag, build)

    def switch(self, rule: str, direction: str, x: int) -> StepSwitch:
        dense = build_method("dense", {}, facts=self.facts)
        if direction == "full_to_sparse":
            sparse, tag = self.sparse(rule, max(x - 1, 0))
            return StepSwitch(dense, sparse, x, tags=(DENSE_TAG, tag))
        sparse, tag = self.sparse(rule, 0)
        return StepSwitch(sparse, dense, x, tags=(tag, DENSE_TAG))


def ablate_prompt(model: DiffusionLM, ids: torch.Tensor, gen: Any, xs: list[int],  # noqa: ANN401 - a GenConfig
                  sparsed: SparseDSettings, ratio: float = 0.3, memo_bytes: int = 256 * 2**20,
                  scorer: Callable[[list[int]], float] | None = None) -> PromptAblation:
    """Every (rule, direction, x) generation for one unpadded prompt ``ids`` [1, P] under sampler settings ``gen``;
    ``scorer`` scores a generation's tokens (0-100)."""
    T = int(gen.steps)
    if any(not 0 <= x <= T for x in xs):
        raise ValueError(f"switch steps {xs} must lie in [0, {T}]")
    memo = MemoModel(model, memo_bytes)
    P = ids.shape[1]
    facts = model.args.facts
    sd = build_method("sparsed", sparsed, facts=facts)
    assert isinstance(sd, SparseD)
    probe = PatternProbe(build_method("dense", {}, facts=facts), sd, tag=DENSE_TAG)
    ref, dense_tokens = _generate(memo, ids, gen, probe, P, keep_canvases=True)
    rules = _Rules(facts, probe, sparsed, ratio, T)
    runs = []
    for rule in RULES:
        for direction in DIRECTIONS:
            for x in xs:
                trace, tokens = _generate(memo, ids, gen, rules.switch(rule, direction, x), P)
                mismatch = sum(a != b for a, b in zip(tokens, dense_tokens, strict=True)) / len(tokens)
                runs.append(SwitchRun(rule, direction, x, tokens, commit_kl(ref, trace), mismatch,
                                      trace.forwards - trace.hits, None if scorer is None else scorer(tokens)))
    sensitivity = {rule: _sensitivity(memo, ref, rules, rule, P) for rule in RULES}
    return PromptAblation(T, list(xs), dense_tokens, runs, sensitivity, memo.forwards, memo.forwards + memo.hits,
                          None if scorer is None else scorer(dense_tokens),
                          {"generations": len(runs) + 1, "prompt_tokens": P})


@dataclass
class Curves:
    """Per (rule, direction) curves over the switch steps, averaged over prompts."""

    steps: int
    xs: list[int]
    kl: dict[str, list[float]]  # "rule/direction" -> per x
    mismatch: dict[str, list[float]]
    score: dict[str, list[float]]
    sensitivity: dict[str, list[float]]  # rule -> per step
    dense_score: float
    prompts: int

    def early_share(self, rule: str, frac: float = 0.2) -> dict[str, float]:
        """How much of the all-sparse loss (KL) the first ``frac`` of the steps account for, both ways.

        ``dense_prefix_removes``: 1 - KL(Full->Sparse(x)) / KL(all sparse), the share of the loss that running
        the first x = round(frac*T) steps dense removes; ``sparse_prefix_causes``: KL(Sparse->Full(x)) /
        KL(all sparse), the share that running only them sparse causes. Both are ``frac`` when every step
        matters alike; larger means the early steps matter more.
        """
        x = round(frac * self.steps)
        fs, sf = self.kl[f"{rule}/full_to_sparse"], self.kl[f"{rule}/sparse_to_full"]
        ix = self.xs.index(x) if x in self.xs else int(np.argmin([abs(v - x) for v in self.xs]))
        all_sparse = fs[self.xs.index(0)]
        return {"x": float(self.xs[ix]), "dense_prefix_removes": 1 - fs[ix] / all_sparse,
                "sparse_prefix_causes": sf[ix] / all_sparse, "all_sparse_kl": all_sparse}


def curves(ablations: list[PromptAblation]) -> Curves:
    first = ablations[0]
    keys = [f"{r}/{d}" for r in RULES for d in DIRECTIONS]

    def mean(key: str, attr: str) -> list[float]:
        rule, direction = key.split("/")
        vals = np.array([a.curve(rule, direction, attr) for a in ablations], dtype=float)
        return vals.mean(0).tolist()

    scored = first.dense_score is not None
    return Curves(
        first.steps, first.xs, {k: mean(k, "kl") for k in keys}, {k: mean(k, "mismatch") for k in keys},
        {k: mean(k, "score") for k in keys} if scored else {},
        {r: np.mean([a.sensitivity[r] for a in ablations], 0).tolist() for r in RULES},
        float(np.mean([a.dense_score for a in ablations])) if scored else float("nan"), len(ablations))


def _sensitivity(memo: MemoModel, ref: Trace, rules: _Rules, rule: str, P: int) -> list[float]:
    out = []
    mask_id = memo.model.args.mask_token_id
    shift = 1 if memo.model.args.shift_logits else 0
    dense = StepSwitch(build_method("dense", {}, facts=rules.facts), rules.topk, 1 << 30, tags=(DENSE_TAG, None))
    for t, ids in enumerate(ref.canvases):
        sparse, tag = rules.sparse(rule, max(t - 1, 0))
        masked = ids[:, P:] == mask_id
        logp = []
        for method in (dense, StepSwitch(sparse, sparse, 0, tags=(tag, tag))):
            h = memo.hidden_states(ids, method)[:, P - shift : ids.shape[1] - shift]
            logp.append(torch.log_softmax(memo.model.head(h[masked]).float(), dim=-1))
        out.append(float((logp[0].exp() * (logp[0] - logp[1])).sum(-1).mean()))
    return out


def _generate(memo: MemoModel, ids: torch.Tensor, gen: Any, method: AttentionMethod, P: int,  # noqa: ANN401
              keep_canvases: bool = False) -> tuple[Trace, list[int]]:
    memo.begin(P, keep_canvases)
    out = sample(memo, ids, gen, method)  # type: ignore[arg-type] - a model stand-in
    trace = memo.end(out.sequences)
    return trace, out.generated[0].tolist()

"""In-repo RULER generator: the 13 tasks of NVIDIA RULER, budgeted to any tokenizer and length.

``generate(task, length, tokenizer, n, seed)`` returns ``n`` samples, each a dict with
``task, index, input`` (the user message), ``answer_prefix`` (what the model continues after
the assistant header), ``outputs`` (gold strings), ``length`` (prompt tokens as the model sees
them: chat template + answer prefix), ``gen_length`` (tokens reserved for the answer; always
``length + gen_length <= max_length``), ``max_length``, ``haystack``, ``metric``, ``fill``,
``preamble`` (rendered text before the chat-wrapped input; only cwe's worked example under a
chat template) and ``notes`` (where the sample departs from RULER's for lack of data).
Use ``render_sample`` (or ``sample_ids``) to build the exact text that was counted.

``fill`` chooses how samples are sized (``sparsed.data.ruler.fill``): ``"official"`` (default)
as RULER's generators do, often well short of the nominal length; ``"tight"`` to within a few
tokens of it.

Task definitions (templates, needle formats, haystacks, frequencies) follow RULER's
``synthetic.yaml`` and ``constants.py``; differences are documented in the task modules.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from sparsed.data.ruler import cache, cwe, fwe, niah, qa, vt
from sparsed.data.ruler import fill as fills
from sparsed.data.ruler.base import Builder, Draft, TaskContext, TaskSpec
from sparsed.data.ruler.budget import (
    LengthTooSmall,
    count_prompt_tokens,
    fit_size,
    prompt_ids,
    render_prompt,
    render_sample,
    sample_ids,
    uses_chat_template,
)
from sparsed.data.ruler.fill import FILLS, context_stats
from sparsed.data.ruler.haystack import DataUnavailable, essay_words, load_essays

__all__ = [
    "FILLS",
    "GEN_LENGTH",
    "TASKS",
    "Builder",
    "DataUnavailable",
    "Draft",
    "LengthTooSmall",
    "TaskContext",
    "TaskSpec",
    "context_stats",
    "count_prompt_tokens",
    "essay_words",
    "fit_size",
    "generate",
    "prompt_ids",
    "render_prompt",
    "render_sample",
    "sample_ids",
]

# RULER's tokens_to_generate per task family.
GEN_LENGTH = {"niah": 128, "vt": 30, "cwe": 120, "fwe": 50, "qa": 32}


def _niah(name: str) -> TaskSpec:
    config = niah.CONFIGS[name]
    return TaskSpec(name, "niah", GEN_LENGTH["niah"], "string_match_all", niah.prepare(config), config.haystack)


TASKS: dict[str, TaskSpec] = {
    **{name: _niah(name) for name in niah.CONFIGS},
    "vt": TaskSpec("vt", "vt", GEN_LENGTH["vt"], "string_match_all", vt.prepare(vt.VtConfig()), "noise"),
    "cwe": TaskSpec("cwe", "cwe", GEN_LENGTH["cwe"], "string_match_all", cwe.prepare(cwe.CweConfig())),
    "fwe": TaskSpec("fwe", "fwe", GEN_LENGTH["fwe"], "string_match_all", fwe.prepare(fwe.FweConfig())),
    "qa_1": TaskSpec("qa_1", "qa", GEN_LENGTH["qa"], "string_match_part", qa.prepare("squad")),
    "qa_2": TaskSpec("qa_2", "qa", GEN_LENGTH["qa"], "string_match_part", qa.prepare("hotpotqa")),
}
QA_DATASETS = {"qa_1": "squad", "qa_2": "hotpotqa"}


def generate(
    task: str,
    length: int,
    tokenizer: Any,
    n: int,
    seed: int = 0,
    *,
    gen_length: int | None = None,
    chat_template: bool = True,
    haystack: str | None = None,
    essay_path: str | os.PathLike[str] | None = None,
    qa_path: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    fill: str = "official",
    cwe_words_path: str | os.PathLike[str] | None = None,
) -> list[dict[str, Any]]:
    """Generate (or read from cache) ``n`` samples of ``task`` fitting ``length`` tokens.

    ``gen_length`` defaults to RULER's per-task value (``TASKS[task].gen_length``).
    ``haystack`` overrides the haystack of niah/vt tasks ("noise", "essay", "needle"); a
    non-default choice is recorded in each sample's ``haystack`` field. ``fill`` is
    ``"official"`` or ``"tight"`` (module docstring). ``cwe_words_path`` is RULER's second cwe
    word list (``english_words.json``), used past the ~8k wonderwords (only near 128k tokens).
    Raises ``DataUnavailable`` (essays or QA data missing) and ``LengthTooSmall``.
    """
    if task not in TASKS:
        raise KeyError(f"unknown RULER task {task!r}; known: {', '.join(TASKS)}")
    fills.check_fill(fill)
    spec = TASKS[task]
    if haystack is not None and spec.haystack is None:
        raise ValueError(f"{task} has no haystack to override")
    gen = spec.gen_length if gen_length is None else int(gen_length)
    if n < 0 or gen < 0:
        raise ValueError("n and gen_length must be non-negative")
    if length - gen <= 0:
        raise LengthTooSmall(f"length {length} leaves no room after {gen} generated tokens")
    ctx = TaskContext(
        task=task,
        length=int(length),
        gen_length=gen,
        seed=int(seed),
        tokenizer=tokenizer,
        chat_template=chat_template,
        haystack=haystack,
        essay_path=None if essay_path is None else os.fspath(essay_path),
        qa_path=None if qa_path is None else os.fspath(qa_path),
        fill=fill,
        cwe_words_path=None if cwe_words_path is None else os.fspath(cwe_words_path),
    )
    path = cache.cache_file(cache.cache_root(cache_dir), _cache_key(spec, ctx, n), tokenizer) if use_cache else None
    if path is not None and (cached := cache.read_samples(path, n)) is not None:
        _warn_notes(cached)
        return cached
    samples = _generate(spec, ctx, n)
    if path is not None:
        try:
            cache.write_samples(path, samples)
        except OSError as exc:  # a read-only cache must not cost the samples just generated
            warnings.warn(f"could not write RULER cache {path}: {exc}", stacklevel=2)
    _warn_notes(samples)
    return samples


def _effective_haystack(spec: TaskSpec, ctx: TaskContext) -> str | None:
    if spec.family == "qa":
        return "documents"
    return ctx.haystack or spec.haystack


def _cache_key(spec: TaskSpec, ctx: TaskContext, n: int) -> dict[str, Any]:
    key: dict[str, Any] = {
        "task": spec.name,
        "length": ctx.length,
        "n": n,
        "seed": ctx.seed,
        "gen_length": ctx.gen_length,
        "chat_template": uses_chat_template(ctx.tokenizer, ctx.chat_template),
        "haystack": _effective_haystack(spec, ctx),
        "fill": ctx.fill,
    }
    if spec.family == "cwe" and ctx.cwe_words_path is not None:
        key["cwe_words"] = cache.file_fingerprint(ctx.cwe_words_path)
    if key["haystack"] == "essay":
        key["essays"] = cache.text_fingerprint(load_essays(ctx.essay_path))
    if spec.family == "qa":
        key["qa"] = qa.source_id(QA_DATASETS[spec.name], ctx.qa_path)
    return key


def _generate(spec: TaskSpec, ctx: TaskContext, n: int) -> list[dict[str, Any]]:
    make_builder = spec.prepare(ctx)
    budget = ctx.length - ctx.gen_length

    def tokens(draft: Draft) -> int:
        return count_prompt_tokens(ctx.tokenizer, draft.input, draft.answer_prefix, ctx.chat_template, draft.preamble)

    base: int | None = None
    step = 0
    if ctx.fill == "official":
        rule = fills.official_rule(spec.family, _effective_haystack(spec, ctx), ctx.length, budget)
        # Probes are samples of their own (negative indices), never one of the n returned.
        probe = (lambda k: make_builder(-(k + 1))) if rule.fresh_probes else (lambda k: make_builder(0))
        base, step = fills.official_base(rule, probe, tokens, budget, ctx.length), rule.step
    samples = []
    hint: int | None = None
    for index in range(n):
        builder: Builder = make_builder(index)
        drafts: dict[int, Draft] = {}

        def count(size: int, builder: Builder = builder, drafts: dict[int, Draft] = drafts) -> int:
            drafts[size] = builder.build(size)
            return tokens(drafts[size])

        try:
            extra: tuple[str, ...] = ()
            if base is None:
                size, n_tokens = fit_size(count, budget, min_size=builder.min_size, max_size=builder.max_size, start=hint)
            else:
                try:
                    size, n_tokens = fills.step_down(builder, count, base, step, budget)
                except LengthTooSmall:  # RULER's own loop never ends here: size it finer, and say so
                    size, n_tokens = fit_size(count, budget, min_size=builder.min_size, max_size=min(base, step))
                    extra = (fills.BELOW_ONE_STEP.format(step=step),)
        except LengthTooSmall as exc:
            msg = f"{spec.name} does not fit in {ctx.length} tokens ({ctx.gen_length} reserved for generation): {exc}"
            raise LengthTooSmall(msg) from exc
        hint = size  # the next sample's size is almost the same: a near-perfect first guess
        draft = drafts[size]
        samples.append(
            {
                "task": spec.name,
                "index": index,
                "input": draft.input,
                "answer_prefix": draft.answer_prefix,
                "preamble": draft.preamble,
                "outputs": draft.outputs,
                "length": n_tokens,
                "gen_length": ctx.gen_length,
                "max_length": ctx.length,
                "haystack": _effective_haystack(spec, ctx),
                "metric": spec.metric,
                "fill": ctx.fill,
                "notes": [*draft.notes, *extra],
            }
        )
    return samples


def _warn_notes(samples: list[dict[str, Any]]) -> None:
    """Say once per call (cached samples too) where the samples depart from RULER's."""
    for note in dict.fromkeys(note for s in samples for note in s.get("notes", ())):
        warnings.warn(f"RULER {samples[0]['task']} at {samples[0]['max_length']} tokens: {note}", stacklevel=3)

"""Variable tracking (RULER's ``vt``): follow a chain of assignments through noise.

A chain is "VAR A = 12345", "VAR B = VAR A ", ... (``num_hops`` hops, 5-letter names; RULER's
hop lines end in a space, kept here, except in an essay where each line becomes a sentence);
the question asks for every variable that ends up holding the chain's value. As in RULER, the
prompt starts with one worked example (3-letter names, its prompt sized to at most 500 tokens
before the answer is appended after a space, hence RULER's "they are:  DRX ...") so the model
sees the expected answer format.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from dataclasses import dataclass

from sparsed.data.ruler import fill as fills
from sparsed.data.ruler import haystack as hs
from sparsed.data.ruler.base import Builder, Draft, TaskContext
from sparsed.data.ruler.budget import fit_size

TEMPLATE = (
    "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n"
    "{context}\nQuestion: Find all variables that are assigned the value {query} in the text above."
)
PREFIX = (
    " Answer: According to the chain(s) of variable assignment in the text above, "
    "{num_v} variables are assigned the value {query}, they are: "
)
FEWSHOT_TOKENS = 500  # RULER sizes its in-context example (before the answer) to 500 tokens


@dataclass(frozen=True)
class VtConfig:
    num_chains: int = 1
    num_hops: int = 4
    haystack: str = "noise"  # "noise" or "essay"
    fewshot: bool = True


Chains = tuple[list[list[str]], list[list[str]], list[str]]


def _chains(rng: random.Random, num_chains: int, num_hops: int, name_len: int) -> Chains:
    """Return (variable names, statements, values) per chain, with all names distinct."""
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < num_chains * (num_hops + 1):
        name = "".join(rng.choices(string.ascii_uppercase, k=name_len))
        if name not in seen:
            seen.add(name)
            names.append(name)
    all_vars, all_statements, values = [], [], []
    for c in range(num_chains):
        chain = names[c * (num_hops + 1) : (c + 1) * (num_hops + 1)]
        value = str(rng.randint(10000, 99998))
        statements = [f"VAR {chain[0]} = {value}"]
        statements += [f"VAR {chain[j + 1]} = VAR {chain[j]} " for j in range(num_hops)]
        all_vars.append(chain)
        all_statements.append(statements)
        values.append(value)
    return all_vars, all_statements, values


def _layout(rng: random.Random, statements: list[list[str]]) -> tuple[list[tuple[float, int, str]], list[str], list[int]]:
    """Size-independent placement: noise fractions per chain, and an essay interleaving."""
    noise_slots = []
    for c, chain in enumerate(statements):
        for frac, stmt in zip(sorted(rng.random() for _ in chain), chain, strict=True):
            noise_slots.append((frac, c, stmt))
    # Essay haystack: interleave chains at random but keep each chain in order.
    queues = [list(chain) for chain in statements]
    flat: list[str] = []
    while any(queues):
        flat.append(rng.choice([q for q in queues if q]).pop(0))
    depths = rng.sample(hs.DEPTHS, len(flat)) if len(flat) <= len(hs.DEPTHS) else [rng.choice(hs.DEPTHS) for _ in flat]
    return noise_slots, flat, depths


def _render(
    kind: str,
    size: int,
    words: tuple[str, ...],
    noise_slots: list[tuple[float, int, str]],
    flat: list[str],
    depths: list[int],
) -> str:
    if kind == "essay":
        return hs.insert_at_depths(hs.essay_text(words, size), [s.strip() + "." for s in flat], depths)
    lines = [hs.NOISE] * size
    # Sorted by (position, chain, order) then inserted back to front keeps chain order.
    placed = sorted(((int(f * (size + 1)), c, i, s) for i, (f, c, s) in enumerate(noise_slots)))
    for pos, _, _, stmt in reversed(placed):
        lines.insert(pos, stmt)
    return "\n".join(lines)


def prepare(config: VtConfig) -> Callable[[TaskContext], Callable[[int], Builder]]:
    def prepare_task(ctx: TaskContext) -> Callable[[int], Builder]:
        kind = ctx.haystack or config.haystack
        if kind not in ("noise", "essay"):
            raise ValueError(f"unknown vt haystack {kind!r} (noise or essay)")
        words = hs.essay_words(ctx.essay_path) if kind == "essay" else ()
        fewshot_size = _fewshot_size(ctx, config, kind, words) if config.fewshot else None
        return lambda index: _builder(ctx, config, kind, words, fewshot_size, index)

    return prepare_task


def _example(rng: random.Random, config: VtConfig, kind: str, words: tuple[str, ...], size: int) -> tuple[str, str]:
    """The worked example: RULER's prompt for a short chain (raw, no chat template) and its answer."""
    hops = min(10, config.num_hops)
    chain_vars, statements, values = _chains(rng, config.num_chains, hops, name_len=3)
    context = _render(kind, size, words, *_layout(rng, statements))
    text = TEMPLATE.format(context=context, query=values[0]) + PREFIX.format(num_v=hops + 1, query=values[0])
    return text, " ".join(chain_vars[0])


def _fewshot_size(ctx: TaskContext, config: VtConfig, kind: str, words: tuple[str, ...]) -> int:
    """Haystack size of the example so that its prompt (without the answer) fits FEWSHOT_TOKENS."""
    tok = ctx.tokenizer

    def example_builder(index: int) -> Builder:
        def build(size: int) -> Draft:
            text, answer = _example(ctx.rng(index, "fewshot"), config, kind, words, size)
            return Draft(text, "", [answer])

        return Builder(build, min_size=0, max_size=10_000)

    def tokens(draft: Draft) -> int:
        return len(tok.encode(draft.input, add_special_tokens=False))

    if ctx.fill == "official":
        rule = fills.vt_example_rule(kind)
        base = fills.official_base(rule, lambda k: example_builder(-(k + 1)), tokens, FEWSHOT_TOKENS, FEWSHOT_TOKENS)
        example = example_builder(-1)
        return fills.step_down(example, lambda size: tokens(example.build(size)), base, rule.step, FEWSHOT_TOKENS)[0]
    example = example_builder(-1)
    return fit_size(lambda size: tokens(example.build(size)), FEWSHOT_TOKENS, min_size=0, max_size=10_000)[0]


def _builder(
    ctx: TaskContext,
    config: VtConfig,
    kind: str,
    words: tuple[str, ...],
    fewshot_size: int | None,
    index: int,
) -> Builder:
    rng = ctx.rng(index, "chains")
    chain_vars, statements, values = _chains(rng, config.num_chains, config.num_hops, name_len=5)
    layout = _layout(rng, statements)
    example = ""
    if fewshot_size is not None:
        text, answer = _example(ctx.rng(index, "fewshot"), config, kind, words, fewshot_size)
        example = text + " " + answer + "\n\n"  # RULER: the answer after a space, a blank line, the task
    query = values[0]
    prefix = PREFIX.format(num_v=config.num_hops + 1, query=query)

    def task_text(size: int) -> str:
        return TEMPLATE.format(context=_render(kind, size, words, *layout), query=query)

    def build(size: int) -> Draft:
        notes = hs.essay_notes(words, size, ctx.essay_path) if kind == "essay" else ()
        return Draft(example + task_text(size), prefix, list(chain_vars[0]), notes=notes)

    def estimate(size: int) -> Draft:  # RULER measures tokens per line without the example
        return Draft(task_text(size), prefix, list(chain_vars[0]))

    return Builder(build, min_size=0, estimate=estimate)

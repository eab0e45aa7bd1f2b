"""RULER's official fill (the default) against the numbers of NVIDIA RULER's generators, and the tight fill.

Expected values come from RULER's scripts/data/synthetic/*.py: the steps (niah 500 essay words / 25
lines, 5 below 4096 tokens; vt 500 / 10, 5 below 4096; its example 50 / 5 within 500 tokens; cwe 10
words; fwe budget//32 words grown from budget//6; qa 10 documents), the bisection between one step
and 3x (cwe 2x) the estimated size with a fresh sample per probe, and the per-sample step down.
"""

from __future__ import annotations

import pytest

from sparsed.data.ruler import context_stats, generate
from sparsed.data.ruler import fill as fills
from sparsed.data.ruler.base import Builder, Draft
from sparsed.data.ruler.budget import LengthTooSmall
from sparsed.data.ruler.haystack import NOISE
from tests.tokenizer_util import make_test_tokenizer


@pytest.fixture(scope="module")
def tok():
    return make_test_tokenizer()


@pytest.mark.parametrize(
    ("family", "haystack", "length", "step"),
    [
        ("niah", "essay", 4096, 500),
        ("niah", "essay", 2048, 500),  # essays keep 500-word steps at any length
        ("niah", "noise", 4096, 25),
        ("niah", "noise", 2048, 5),
        ("niah", "needle", 8192, 25),
        ("niah", "needle", 4095, 5),
        ("vt", "noise", 4096, 10),
        ("vt", "noise", 2048, 5),
        ("vt", "essay", 2048, 500),
        ("cwe", None, 4096, 10),
        ("qa", "documents", 4096, 10),
    ],
)
def test_official_steps(family, haystack, length, step):
    assert fills.official_rule(family, haystack, length, length - 100).step == step


def test_official_search_shapes():
    cwe = fills.official_rule("cwe", None, 4096, 3976)
    assert (cwe.search, cwe.probe_size, cwe.bound_factor, cwe.floor_bound) == ("bisect", 4096, 2.0, True)
    fwe = fills.official_rule("fwe", None, 4096, 4046)
    assert (fwe.search, fwe.start, fwe.step) == ("grow", 4046 // 6, 4046 // 32)
    assert not fills.official_rule("qa", "documents", 4096, 4064).fresh_probes  # RULER probes with question 0
    assert fills.official_rule("niah", "essay", 4096, 3968).fresh_probes
    assert (fills.vt_example_rule("noise").step, fills.vt_example_rule("essay").step) == (5, 50)
    with pytest.raises(ValueError, match="choose one of: official, tight"):
        fills.check_fill("loose")


def _linear(offsets: dict[int, int]):
    """Probe k renders ``2 * size + offsets[k]`` tokens: a sample whose draws take more or fewer tokens."""

    def probe(k: int) -> Builder:
        return Builder(lambda size: Draft("x" * (2 * size + offsets.get(k, 0)), "", ["x"]), min_size=0)

    return probe


def _chars(draft: Draft) -> int:
    return len(draft.input)


def test_bisection_keeps_the_largest_size_a_fresh_probe_passed():
    # Worked by hand from RULER's loop (lower = step = 5; rate = 10 tokens / 5 units from probe 0, so
    # upper = int(110 / 2 * 3) = 165; budget 100): mids 85 fail, 44 pass, 64, 54 fail, 49 fail (its
    # probe is 5 tokens longer), 46 pass, 47 pass (10 shorter), 48 fail (10 longer): 47, where the
    # noiseless answer is 50.
    rule = fills.StepRule(step=5)
    assert fills.official_base(rule, _linear({}), _chars, budget=100, length=110) == 50
    noisy = _linear({5: 5, 7: -10, 8: 10})
    assert fills.official_base(rule, noisy, _chars, budget=100, length=110) == 47
    # Probes are separate samples: the same sample for every probe (qa) sees no noise after probe 0.
    same = fills.StepRule(step=5, fresh_probes=False)
    assert fills.official_base(same, noisy, _chars, budget=100, length=110) == 50


def test_nothing_fits_gives_one_step():
    rule = fills.StepRule(step=5)
    assert fills.official_base(rule, _linear({k: 500 for k in range(1, 40)}), _chars, budget=100, length=110) == 5


def test_cwe_bound_is_floor_times_two():
    # 3 tokens per unit from a 4-unit probe, length 113: RULER's cwe bound is floor(113 / 3) * 2 = 74
    # (not int(113 / 3 * 2) = 75), so with lower = 5 the first mid is 39 (not 40).
    seen: list[int] = []

    def probe(k: int) -> Builder:
        def build(size: int) -> Draft:
            seen.append(size)
            return Draft("x" * (3 * size), "", ["x"])

        return Builder(build, min_size=0)

    rule = fills.StepRule(step=5, probe_size=4, bound_factor=2.0, floor_bound=True)
    assert fills.official_base(rule, probe, _chars, budget=100, length=113) == 33
    assert seen[:2] == [4, 39]
    seen.clear()
    fills.official_base(fills.StepRule(step=5, probe_size=4, bound_factor=2.0), probe, _chars, budget=100, length=113)
    assert seen[:2] == [4, 40]


def test_grow_search_is_fwe_s():
    # 3 tokens per word, budget 1000: 166, 197, ..., 321 (963 < 1000), 352 (1056): back one step to 321.
    rule = fills.official_rule("fwe", None, 1050, 1000)
    probe = lambda k: Builder(lambda size: Draft("x" * (3 * size), "", ["x"]), min_size=0)  # noqa: E731
    assert fills.official_base(rule, probe, _chars, budget=1000, length=1050) == 321


def test_step_down_drops_whole_steps():
    builder = Builder(lambda size: Draft("x" * (2 * size + 8), "", ["x"]), min_size=0)
    count = lambda size: _chars(builder.build(size))  # noqa: E731
    assert fills.step_down(builder, count, 47, 5, 100) == (42, 92)  # 102 at 47: one step, not to 46
    assert fills.step_down(builder, count, 40, 5, 100) == (40, 88)  # fits: untouched
    with pytest.raises(LengthTooSmall, match="no whole step left"):
        fills.step_down(builder, count, 5, 5, 10)


HAYSTACK_LINE = {"niah_single_1": NOISE, "niah_multikey_2": "One of the special magic numbers"}


@pytest.mark.parametrize(("task", "length", "step"), [("niah_multikey_2", 4096, 25), ("niah_single_1", 2048, 5)])
def test_haystacks_differ_by_whole_steps(task, length, step, tok):
    official = generate(task, length, tok, 12, seed=0, use_cache=False)
    lines = {s["input"].count(HAYSTACK_LINE[task]) for s in official}
    # Every sample has the searched size or one step less (these draws: some samples stepped down).
    assert len(lines) == 2 and max(lines) - min(lines) == step
    assert all(s["length"] <= length - s["gen_length"] for s in official)
    tight = generate(task, length, tok, 12, seed=0, use_cache=False, fill="tight")
    assert all(s["length"] >= length - s["gen_length"] - 40 for s in tight)  # within one haystack line
    # The same draws either way: only the haystack's size depends on the fill.
    assert [s["outputs"] for s in official] == [s["outputs"] for s in tight]
    assert [s["answer_prefix"] for s in official] == [s["answer_prefix"] for s in tight]


def test_official_samples_fall_short_and_the_result_says_so(tok):
    samples = generate("niah_multikey_2", 4096, tok, 10, seed=0, use_cache=False)
    tight = generate("niah_multikey_2", 4096, tok, 10, seed=0, use_cache=False, fill="tight")
    stats, tight_stats = context_stats(samples), context_stats(tight)
    assert stats["fill"] == "official" and tight_stats["fill"] == "tight"
    assert stats["budget"] == tight_stats["budget"] == 4096 - 128
    assert stats["min"] <= stats["mean"] <= stats["max"] <= stats["budget"]
    assert tight_stats["min"] >= stats["budget"] - 40  # one needle line
    assert stats["mean"] < tight_stats["mean"]
    lines = [s["input"].count("One of the special magic numbers") for s in samples]
    assert len({n % 25 for n in lines}) == 1


def test_vt_example_fits_500_tokens_before_its_answer(tok):
    (s,) = generate("vt", 4096, tok, 1, use_cache=False)
    example = s["input"].split("\n\nMemorize and track", 1)[0]
    prompt = example[: example.rindex("they are: ") + len("they are: ")]
    assert 400 < len(tok.encode(prompt, add_special_tokens=False)) <= 500

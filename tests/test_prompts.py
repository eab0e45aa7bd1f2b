"""Runner prompts: short arithmetic and budgeted needle-in-a-haystack."""

from __future__ import annotations

import pytest

from sparsed.data.prompts import KINDS, Prompt, kind_length, make_prompt
from sparsed.data.ruler import count_prompt_tokens
from sparsed.data.ruler.haystack import essays_available
from tests.tokenizer_util import make_test_tokenizer


@pytest.fixture(scope="module")
def tok():
    return make_test_tokenizer()


def test_kind_length():
    assert kind_length("short") is None
    assert kind_length("4k") == 4096 and kind_length("64k") == 65536
    assert "32k" in KINDS
    with pytest.raises(ValueError):
        kind_length("huge")


def test_short_prompt(tok):
    p = make_prompt("short", tok)
    assert isinstance(p, Prompt) and p.name == "short-s0"
    assert p.messages == [{"role": "user", "content": p.text}]
    assert "apples" in p.text and p.answers[0].isdigit()
    assert p.n_tokens == count_prompt_tokens(tok, p.text, p.answer_prefix) < 100
    assert make_prompt("short", tok) == p and make_prompt("short", tok, seed=1).text != p.text


@pytest.mark.parametrize("kind", ["1k", "2k", "4k"])
@pytest.mark.parametrize(
    "haystack", ["noise", pytest.param("essay", marks=pytest.mark.skipif(not essays_available(), reason="no essays"))]
)
def test_niah_prompt_fits(kind, haystack, tok, tmp_path):
    length = kind_length(kind)
    p = make_prompt(kind, tok, gen_length=64, haystack=haystack, cache_dir=tmp_path)
    assert p.name == f"niah-{length}-{haystack}-s0"
    assert 0.9 * (length - 64) <= p.n_tokens <= length - 64
    assert p.n_tokens == count_prompt_tokens(tok, p.text, p.answer_prefix)
    assert p.answers and all(a in p.text for a in p.answers)
    assert p.answer_prefix.startswith(" The special magic number for")


def test_niah_prompt_explicit_length_and_seed(tok, tmp_path):
    a = make_prompt("niah", tok, length=1500, seed=3, haystack="noise", cache_dir=tmp_path)
    b = make_prompt("niah", tok, length=1500, seed=4, haystack="noise", cache_dir=tmp_path)
    assert a.n_tokens + 128 <= 1500 and a.answers != b.answers
    with pytest.raises(ValueError):
        make_prompt("niah", tok)


def test_auto_haystack(tok, tmp_path):
    p = make_prompt("1k", tok, haystack="auto", cache_dir=tmp_path)
    assert p.name.endswith(("essay-s0", "noise-s0"))
    p = make_prompt("1k", tok, haystack="auto", essay_path=str(tmp_path / "none"), cache_dir=tmp_path)
    assert "noise" in p.name

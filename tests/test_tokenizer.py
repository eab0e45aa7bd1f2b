"""The project tokenizer (sparsed/assets/tokenizer) and the remote-code-free tokenizer loader."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sparsed.tokenizer import load_tokenizer, project_tokenizer_path

SPECIALS = ["<|endoftext|>", "<|startoftext|>", "<|mdm_mask|>", "<|start_header_id|>", "<|end_header_id|>",
            "<|eot_id|>"]
CHAT = [{"role": "user", "content": "What is 12 + 7?"}]


@pytest.fixture(scope="module")
def tok():  # noqa: ANN201
    return load_tokenizer(None)


def test_project_tokenizer_files_small() -> None:
    folder = project_tokenizer_path()
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        assert (folder / name).is_file()
    assert sum(p.stat().st_size for p in folder.iterdir()) < 1_000_000
    assert json.loads((folder / "tokenizer_config.json").read_text())["tokenizer_class"] == "PreTrainedTokenizerFast"


def test_loads_with_specials(tok) -> None:  # noqa: ANN001
    assert 3000 <= len(tok) <= 4096
    ids = [tok.convert_tokens_to_ids(t) for t in SPECIALS]
    assert len(set(ids)) == len(SPECIALS) and all(i is not None and i < len(tok) for i in ids)
    assert tok.eos_token == "<|endoftext|>" and tok.pad_token_id == tok.eos_token_id
    assert tok.bos_token == "<|startoftext|>" and tok.mask_token == "<|mdm_mask|>"
    # a special token in text is one token, never split into pieces
    assert tok("<|mdm_mask|>", add_special_tokens=False)["input_ids"] == [tok.mask_token_id]


def test_round_trip_and_digits(tok) -> None:  # noqa: ANN001
    text = ("One of the special magic numbers for fearless-sunrise is: 7302941.\n"
            "VAR QWERT = 12345 and 3f2a9c1e-1b2c-4d5e-8f90-123456789abc. The grass is green!")
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text
    pieces = tok.convert_ids_to_tokens(tok("7302941", add_special_tokens=False)["input_ids"])
    assert pieces == list("7302941")  # digits are split individually


def test_chat_template(tok) -> None:  # noqa: ANN001
    text = tok.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=False)
    assert text == ("<|startoftext|><|start_header_id|>user<|end_header_id|>\n\nWhat is 12 + 7?<|eot_id|>"
                    "<|start_header_id|>assistant<|end_header_id|>\n\n")
    no_gen = tok.apply_chat_template(CHAT, add_generation_prompt=False, tokenize=False)
    assert no_gen.endswith("<|eot_id|>")


def _dream_style_config(extra: dict | None = None) -> dict:
    src = json.loads((project_tokenizer_path() / "tokenizer_config.json").read_text())
    return {
        "tokenizer_class": "DreamTokenizer",
        "auto_map": {"AutoTokenizer": ["tokenization_dream.DreamTokenizer", None]},
        "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
        "mask_token": {"content": "<|mdm_mask|>", "special": True},
        "additional_special_tokens": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        "added_tokens_decoder": src["added_tokens_decoder"],
        "chat_template": src["chat_template"],
    } | (extra or {})


def _check_fallback(tmp: Path, reference) -> None:  # noqa: ANN001
    tok = load_tokenizer(str(tmp))
    text = "The special magic number for calm-river is: 4242. VAR ABCDE = 777"
    assert tok(text, add_special_tokens=False)["input_ids"] == reference(text, add_special_tokens=False)["input_ids"]
    assert tok.mask_token_id == reference.mask_token_id
    assert tok.eos_token_id == reference.eos_token_id
    assert tok.convert_tokens_to_ids("<|eot_id|>") == reference.convert_tokens_to_ids("<|eot_id|>")
    assert tok.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=False) == \
        reference.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=False)


def test_dream_style_fallback_tokenizer_json(tmp_path: Path, tok) -> None:  # noqa: ANN001
    shutil.copy(project_tokenizer_path() / "tokenizer.json", tmp_path / "tokenizer.json")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(_dream_style_config()))
    # no tokenization_dream.py in the folder: loading must not need (or run) remote code
    _check_fallback(tmp_path, tok)


def test_dream_style_fallback_vocab_merges(tmp_path: Path) -> None:
    """A Qwen2-style folder (vocab.json + merges.txt, added tokens only in the config)."""
    model = json.loads((project_tokenizer_path() / "tokenizer.json").read_text())["model"]
    vocab = {t: i for t, i in model["vocab"].items() if not t.startswith("<|")}
    # Qwen2 puts added tokens after the BPE vocabulary: renumber so that the specials come last.
    order = sorted(vocab, key=vocab.get)
    vocab = {t: i for i, t in enumerate(order)}
    specials = {str(len(vocab) + i): {"content": t, "special": True} for i, t in enumerate(SPECIALS)}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(_dream_style_config({"added_tokens_decoder": specials})))
    tok = load_tokenizer(str(tmp_path))
    assert tok.convert_tokens_to_ids("<|mdm_mask|>") == len(vocab) + 2 == tok.mask_token_id
    text = "Here we go. There and back again."
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    rendered = tok.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=False)
    assert rendered.startswith("<|startoftext|><|start_header_id|>user")

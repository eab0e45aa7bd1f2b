"""Tokenizers without remote code: a checkpoint's own, or the project's (``sparsed/assets/tokenizer``).

``AutoTokenizer`` handles any folder whose ``tokenizer_config.json`` names a class that ships with
transformers. Some checkpoints name a class from their own Python file instead (Dream's
``DreamTokenizer`` behind ``auto_map``), which would need ``trust_remote_code=True``; we never run a
checkpoint's code, so for those the tokenizer is rebuilt from its data files (``tokenizer.json``, else
``vocab.json`` + ``merges.txt``) with the special tokens and chat template read from the config.
"""

from __future__ import annotations

import inspect
import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("sparsed")

SPECIAL_KEYS = ("bos_token", "eos_token", "pad_token", "unk_token", "mask_token", "sep_token", "cls_token")
TOKENIZER_FILES = ["*.json", "*.txt", "*.jinja", "*.model", "*.tiktoken"]


def project_tokenizer_path() -> Path:
    """The folder of the project tokenizer (trained by ``scripts/train_tokenizer.py``)."""
    return Path(__file__).resolve().parent / "assets" / "tokenizer"


def load_tokenizer(path: str | Path | None = None) -> Any:  # noqa: ANN401 - a transformers tokenizer
    """Load the tokenizer of a checkpoint folder (or hub id); ``None`` gives the project tokenizer."""
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    source = str(project_tokenizer_path() if path is None else path)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # transformers does not know model_type "llada"; only the tokenizer is read
    try:
        return AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    except Exception as exc:  # noqa: BLE001 - any failure here: try the data files before giving up
        folder = _local_folder(source)
        if folder is None:
            raise
        log.info("AutoTokenizer could not load %s (%s); rebuilding it from its data files", source, exc)
        try:
            return tokenizer_from_files(folder)
        except FileNotFoundError:
            raise exc from None
    finally:
        hf_logging.set_verbosity(verbosity)


def _local_folder(source: str) -> Path | None:
    p = Path(source).expanduser()
    if p.is_dir():
        return p
    try:  # a hub id: only the tokenizer's data files, and only when they are reachable
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=source, allow_patterns=TOKENIZER_FILES))
    except Exception:  # noqa: BLE001 - offline or not a hub id: the caller re-raises the original error
        return None


def _token_text(value: Any) -> str | None:  # noqa: ANN401 - str or an AddedToken-like dict
    if isinstance(value, dict):
        return value.get("content")
    return value


def _chat_template(folder: Path, config: dict[str, Any]) -> str | None:
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text()
    template = config.get("chat_template")
    if isinstance(template, list):  # [{"name": "default", "template": ...}, ...]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        return named.get("default") or next(iter(named.values()), None)
    return template


def tokenizer_from_files(folder: str | Path) -> Any:  # noqa: ANN401 - a transformers tokenizer
    """Build a fast tokenizer from ``tokenizer.json`` or ``vocab.json`` + ``merges.txt``, config applied."""
    from tokenizers import AddedToken

    folder = Path(folder)
    cfg_path = folder / "tokenizer_config.json"
    config: dict[str, Any] = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
    special = {k: _token_text(config[k]) for k in SPECIAL_KEYS if config.get(k) is not None}
    extra = [_token_text(t) for t in config.get("additional_special_tokens") or config.get("extra_special_tokens") or []]
    if isinstance(config.get("extra_special_tokens"), dict):  # transformers 5 may store named extras
        extra = [_token_text(t) for t in config["extra_special_tokens"].values()]
    extra = [t for t in extra if t]

    if (folder / "tokenizer.json").is_file():
        from transformers import PreTrainedTokenizerFast

        tok = PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"), **special)
    elif (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        tok = _qwen2_from_files(folder, special)
        # Slow-format folders list their added tokens only in the config: add them in id order so
        # that each lands on the id the checkpoint's embeddings were trained with.
        added = config.get("added_tokens_decoder") or {}
        for idx in sorted(added, key=int):
            entry = added[idx]
            if entry["content"] in tok.get_vocab():
                continue
            tok.add_tokens([AddedToken(entry["content"], special=bool(entry.get("special", True)),
                                       normalized=bool(entry.get("normalized", False)))])
            got = tok.convert_tokens_to_ids(entry["content"])
            if got != int(idx):
                log.warning("added token %r landed on id %d, the config says %s", entry["content"], got, idx)
    else:
        raise FileNotFoundError(f"{folder}: neither tokenizer.json nor vocab.json + merges.txt")

    if extra:
        tok.add_special_tokens({"additional_special_tokens": extra})
    template = _chat_template(folder, config)
    if template:
        tok.chat_template = template
    if config.get("model_max_length"):
        tok.model_max_length = int(config["model_max_length"])
    if config.get("padding_side") in ("left", "right"):
        tok.padding_side = config["padding_side"]
    return tok


def _qwen2_from_files(folder: Path, special: dict[str, str]) -> Any:  # noqa: ANN401
    from transformers import Qwen2TokenizerFast

    params = inspect.signature(Qwen2TokenizerFast.__init__).parameters
    if "vocab_file" in params:  # transformers 4.x takes file names
        return Qwen2TokenizerFast(vocab_file=str(folder / "vocab.json"), merges_file=str(folder / "merges.txt"),
                                  **special)
    # transformers 5.x takes the vocabulary and merges themselves
    vocab = json.loads((folder / "vocab.json").read_text())
    merges = []
    for line in (folder / "merges.txt").read_text().splitlines():
        if line and not line.startswith("#version"):
            a, b = line.split(" ")
            merges.append((a, b))
    return Qwen2TokenizerFast(vocab=vocab, merges=merges, **special)

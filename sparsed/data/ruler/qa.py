"""Question answering with distractor documents (RULER's ``qa_1`` SQuAD v2, ``qa_2`` HotpotQA).

Sample i asks question i of the dev set (answerable questions only for SQuAD). Its gold
documents are mixed with distractors until the budget is full: first the other paragraphs of
the same article (SQuAD), then random documents of the whole set; the mix is shuffled.

Data sources, in order: ``qa_path`` (a file, or a directory holding one of the known file
names), else the Hugging Face hub through ``datasets``. Without data, ``DataUnavailable`` is
raised quickly (never a hang on an unreachable hub) so callers report the task as not run.

Accepted files: SQuAD v2 ``dev-v2.0.json``, HotpotQA ``hotpot_dev_distractor_v1.json``, or
JSONL with one question per line::

    {"question": str, "answers": [str, ...], "context": [gold doc, ...],
     "distractors": [same-article doc, ...]}   # "distractors" optional
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import random
import socket
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from sparsed.data.ruler.base import Builder, Draft, TaskContext
from sparsed.data.ruler.haystack import DataUnavailable

TEMPLATE = (
    "Answer the question based on the given documents. Only give me the answer and do not output "
    "any other words.\n\nThe following are given documents.\n\n{context}\n\n"
    "Answer the question based on the given documents. Only give me the answer and do not output "
    "any other words.\n\nQuestion: {query}"
)
PREFIX = " Answer:"
DOCUMENT = "Document {i}:\n{document}"

HF_SOURCES = {"squad": ("rajpurkar/squad_v2", None), "hotpotqa": ("hotpotqa/hotpot_qa", "distractor")}
FILE_NAMES = {
    "squad": ("dev-v2.0.json", "squad.json", "squad.jsonl", "qa_1.jsonl"),
    "hotpotqa": ("hotpot_dev_distractor_v1.json", "hotpotqa.json", "hotpotqa.jsonl", "qa_2.jsonl"),
}


@dataclass(frozen=True)
class QaItem:
    query: str
    outputs: tuple[str, ...]
    gold: tuple[int, ...]  # indices into QaData.docs
    related: tuple[int, ...] = ()  # preferred distractors (other paragraphs of the article)


@dataclass(frozen=True)
class QaData:
    items: tuple[QaItem, ...]
    docs: tuple[str, ...]
    source: str  # where it came from; part of the cache key


class _Docs:
    """Deduplicated, sorted document table (as RULER), filled while reading questions."""

    def __init__(self, raw: list[tuple[str, list[str], list[str], list[str]]]) -> None:
        # raw: (question, answers, gold docs, related docs)
        self.docs = tuple(sorted({d for _, _, gold, rel in raw for d in (*gold, *rel)}))
        index = {d: i for i, d in enumerate(self.docs)}
        self.items = tuple(
            QaItem(q, tuple(a), tuple(index[d] for d in gold), tuple(index[d] for d in rel if d not in gold))
            for q, a, gold, rel in raw
        )


def _squad_raw(articles: Iterable[tuple[str, list[dict[str, Any]]]]) -> list[tuple[str, list[str], list[str], list[str]]]:
    """articles: (title, [{"context", "question", "answers": [str]}]); unanswerable skipped."""
    raw = []
    for _, rows in articles:
        paragraphs = list(dict.fromkeys(r["context"] for r in rows))
        for r in rows:
            if r["answers"]:
                raw.append((r["question"], list(r["answers"]), [r["context"]], paragraphs))
    return raw


def _squad_json(data: dict[str, Any]) -> list[tuple[str, list[str], list[str], list[str]]]:
    articles = []
    for article in data["data"]:
        rows = [
            {
                "context": p["context"],
                "question": q["question"],
                "answers": [] if q.get("is_impossible") else [a["text"] for a in q["answers"]],
            }
            for p in article["paragraphs"]
            for q in p["qas"]
        ]
        articles.append((article.get("title", ""), rows))
    return _squad_raw(articles)


def _hotpot_doc(title: str, sentences: list[str]) -> str:
    return f"{title}\n{''.join(sentences)}"


def _hotpot_json(data: list[dict[str, Any]]) -> list[tuple[str, list[str], list[str], list[str]]]:
    return [(d["question"], [d["answer"]], [_hotpot_doc(t, s) for t, s in d["context"]], []) for d in data]


def _jsonl(lines: Iterable[str]) -> list[tuple[str, list[str], list[str], list[str]]]:
    raw = []
    for line in lines:
        if line.strip():
            r = json.loads(line)
            raw.append((r["question"], list(r["answers"]), list(r["context"]), list(r.get("distractors", []))))
    return raw


def _read_file(path: Path) -> list[tuple[str, list[str], list[str], list[str]]]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return _jsonl(text.splitlines())
    data = json.loads(text)
    if isinstance(data, dict) and "data" in data:
        return _squad_json(data)
    if isinstance(data, list) and data and "context" in data[0]:
        return _hotpot_json(data)
    raise DataUnavailable(f"{path}: neither SQuAD v2 JSON, HotpotQA JSON nor QA JSONL")


def _resolve(dataset: str, qa_path: str) -> Path:
    path = Path(qa_path).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        for name in FILE_NAMES[dataset]:
            if (path / name).is_file():
                return path / name
    raise DataUnavailable(f"no {dataset} data at {path} (expected a file or one of {FILE_NAMES[dataset]})")


def _file_source(path: Path) -> str:
    stat = path.stat()
    return f"file:{path.resolve()}:{stat.st_size}:{int(stat.st_mtime)}"


def source_id(dataset: str, qa_path: str | None) -> str:
    """Identity of the data ``load_qa`` would read, without reading it (for cache keys)."""
    if qa_path is None:
        return "hf:{}:{}".format(*HF_SOURCES[dataset])
    return _file_source(_resolve(dataset, qa_path))


@functools.lru_cache(maxsize=4)
def load_qa(dataset: str, qa_path: str | None = None) -> QaData:
    """Load ``"squad"`` or ``"hotpotqa"`` dev data; raises ``DataUnavailable`` without it."""
    if dataset not in HF_SOURCES:
        raise ValueError(f"unknown QA dataset {dataset!r}")
    if qa_path is not None:
        path = _resolve(dataset, qa_path)
        raw = _read_file(path)
        source = _file_source(path)
    else:
        raw = _from_hub(dataset)
        source = source_id(dataset, None)
    if not raw:
        raise DataUnavailable(f"{dataset}: no usable questions in {source}")
    table = _Docs(raw)
    return QaData(table.items, table.docs, source)


def _env_offline() -> bool:
    names = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
    return any(os.environ.get(n, "").strip().upper() in {"1", "ON", "YES", "TRUE"} for n in names)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A TCP connect to the hub endpoint: cheap, and avoids datasets' long retry loops offline."""
    try:
        from huggingface_hub import constants

        url = urlparse(constants.ENDPOINT)
        host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except Exception:  # noqa: BLE001 - any failure means "not reachable"
        return False


@contextlib.contextmanager
def _offline(enabled: bool) -> Iterator[None]:
    """Force datasets/huggingface_hub offline for one call (their flags are read at import)."""
    if not enabled:
        yield
        return
    import datasets.config
    from huggingface_hub import constants

    saved = datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE = saved


def _from_hub(dataset: str) -> list[tuple[str, list[str], list[str], list[str]]]:
    name, config = HF_SOURCES[dataset]
    try:
        import datasets
    except ImportError as exc:
        raise DataUnavailable(f"{dataset}: `datasets` is not installed and no qa_path was given") from exc
    offline = _env_offline() or not _hub_reachable()
    try:
        with _offline(offline):
            ds = datasets.load_dataset(name, config, split="validation")
    except Exception as exc:  # noqa: BLE001 - every failure here means "no data"
        mode = "offline" if offline else "online"
        raise DataUnavailable(
            f"{dataset}: could not load {name} ({mode}): {type(exc).__name__}: {exc}. "
            f"Pass qa_path=<{FILE_NAMES[dataset][0]} or a QA JSONL>."
        ) from exc
    if dataset == "squad":
        articles: dict[str, list[dict[str, Any]]] = {}
        for row in ds:
            articles.setdefault(row["title"], []).append(
                {"context": row["context"], "question": row["question"], "answers": list(row["answers"]["text"])}
            )
        return _squad_raw(articles.items())
    return [
        (
            row["question"],
            [row["answer"]],
            [_hotpot_doc(t, s) for t, s in zip(row["context"]["title"], row["context"]["sentences"], strict=True)],
            [],
        )
        for row in ds
    ]


class _DocOrder:
    """Gold docs, then related ones, then random others: a lazily drawn, prefix-stable order."""

    def __init__(self, rng: random.Random, n_docs: int, item: QaItem) -> None:
        related = list(item.related)
        rng.shuffle(related)
        self._order = list(item.gold) + related
        self._used = set(self._order)
        self._rng = rng
        self._n = n_docs

    def first(self, count: int) -> list[int]:
        while len(self._order) < min(count, self._n):
            if 2 * len(self._used) > self._n:  # dense: shuffling the rest beats rejection
                rest = [i for i in range(self._n) if i not in self._used]
                self._rng.shuffle(rest)
                self._order += rest
                self._used.update(rest)
                break
            i = self._rng.randrange(self._n)
            if i not in self._used:
                self._used.add(i)
                self._order.append(i)
        if count <= len(self._order):
            return self._order[:count]
        # More than the whole set: cycle through it again, as RULER repeats its documents.
        return (self._order * -(-count // len(self._order)))[:count]


def prepare(dataset: str) -> Callable[[TaskContext], Callable[[int], Builder]]:
    def prepare_task(ctx: TaskContext) -> Callable[[int], Builder]:
        data = load_qa(dataset, ctx.qa_path)
        return lambda index: _builder(ctx, data, index)

    return prepare_task


def _builder(ctx: TaskContext, data: QaData, index: int) -> Builder:
    if index >= len(data.items):
        raise ValueError(f"{ctx.task}: asked for sample {index} but the data has {len(data.items)} questions")
    item = data.items[index]
    order = _DocOrder(ctx.rng(index, "docs"), len(data.docs), item)

    def build(size: int) -> Draft:
        docs = [data.docs[i] for i in order.first(size)]
        ctx.rng(index, "shuffle").shuffle(docs)
        context = "\n\n".join(DOCUMENT.format(i=i + 1, document=d) for i, d in enumerate(docs))
        return Draft(TEMPLATE.format(context=context, query=item.query), PREFIX, list(item.outputs))

    return Builder(build, min_size=len(item.gold))

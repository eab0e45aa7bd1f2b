"""On-disk JSONL cache of generated samples.

Generating 128k-token samples takes seconds each, so they are stored under
``cache_dir`` > ``$SPARSED_CACHE/ruler`` > ``~/.cache/sparsed/ruler``. The file name carries
every input that changes the samples (task, length, count, seed, generation length, chat
wrapping, haystack and data sources, and the tokenizer's identity: name, vocabulary size and
a hash of its serialized form and chat template). Files are written to a temporary name and
renamed, so readers never see a partial file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import weakref
from pathlib import Path
from typing import Any

# Bump when generation changes in a way that alters samples, to invalidate old caches.
GENERATOR_VERSION = 2

_FINGERPRINTS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("SPARSED_CACHE")
    if env:
        return Path(env).expanduser() / "ruler"
    return Path.home() / ".cache" / "sparsed" / "ruler"


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """Stable id of a tokenizer: name, vocabulary size, serialized model, chat template."""
    try:
        return _FINGERPRINTS[tokenizer]
    except (KeyError, TypeError):
        pass
    digest = hashlib.sha256()
    digest.update(str(getattr(tokenizer, "name_or_path", "")).encode())
    digest.update(str(len(tokenizer)).encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        digest.update(backend.to_str().encode())
    else:
        digest.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
        digest.update(json.dumps(getattr(tokenizer, "all_special_tokens", [])).encode())
    template = getattr(tokenizer, "chat_template", None)
    digest.update(json.dumps(template, sort_keys=True).encode())
    fingerprint = digest.hexdigest()
    try:
        _FINGERPRINTS[tokenizer] = fingerprint
    except TypeError:  # not weak-referenceable: just recompute next time
        pass
    return fingerprint


def text_fingerprint(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_fingerprint(path: str | os.PathLike[str]) -> str:
    """Content hash of a data file (a missing file hashes as such; reading it fails later, clearly)."""
    try:
        return hashlib.sha256(Path(path).expanduser().read_bytes()).hexdigest()[:16]
    except OSError:
        return f"missing:{os.fspath(path)}"


def cache_file(root: Path, key: dict[str, Any], tokenizer: Any) -> Path:
    """File for ``key`` (a JSON-able dict including task, length, n and seed)."""
    full = {**key, "tokenizer": tokenizer_fingerprint(tokenizer), "version": GENERATOR_VERSION}
    digest = hashlib.sha256(json.dumps(full, sort_keys=True).encode()).hexdigest()[:16]
    name = Path(str(getattr(tokenizer, "name_or_path", "") or "tokenizer")).name
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:40] or "tokenizer"
    stem = f"{key['task']}-L{key['length']}-n{key['n']}-s{key['seed']}-{name}-{digest}"
    return root / f"{stem}.jsonl"


def read_samples(path: Path, n: int) -> list[dict[str, Any]] | None:
    """The cached samples, or None if the file is missing or does not hold ``n`` samples."""
    try:
        with path.open(encoding="utf-8") as f:
            samples = [json.loads(line) for line in f if line.strip()]
    except (OSError, json.JSONDecodeError):
        return None
    return samples if len(samples) == n else None


def write_samples(path: Path, samples: list[dict[str, Any]]) -> None:
    """Atomic write: a temporary file in the same directory, then rename over the target."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for sample in samples:
                f.write(json.dumps(sample, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

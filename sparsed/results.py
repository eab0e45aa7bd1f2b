"""Result files: atomic JSON writes and the facts about the machine a number came from."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch


def _write_tmp(path: Path, data: Any) -> Path:  # noqa: ANN401 - JSON data
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(json.dumps(data, indent=2, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())  # the bytes are on disk before the name points at them
    return tmp


def write_json_atomic(path: str | Path, data: Any) -> Path:  # noqa: ANN401
    """Write then rename, so that a crash never leaves a half-written result."""
    path = Path(path)
    _write_tmp(path, data).replace(path)
    return path


def write_json_exclusive(path: str | Path, data: Any) -> Path:  # noqa: ANN401
    """Like ``write_json_atomic``, but never replaces a file already at ``path``.

    Two launches of one job (a sweep started twice) both finish: the first result keeps the name, the
    second lands beside it as ``<stem>.duplicate-<pid>.json``. The returned path says which happened.
    """
    path = Path(path)
    tmp = _write_tmp(path, data)
    try:
        os.link(tmp, path)  # atomic, and fails when the name exists
        return path
    except FileExistsError:
        alt = path.with_name(f"{path.stem}.duplicate-{os.getpid()}{path.suffix}")
        tmp.replace(alt)
        return alt
    except OSError:  # a file system without hard links: a rename, checked first
        if path.exists():
            alt = path.with_name(f"{path.stem}.duplicate-{os.getpid()}{path.suffix}")
            tmp.replace(alt)
            return alt
        tmp.replace(path)
        return path
    finally:
        tmp.unlink(missing_ok=True)


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or None
    except Exception:  # noqa: BLE001 - not a git checkout
        return None


def versions() -> dict[str, str | None]:
    import transformers

    import sparsed

    out: dict[str, str | None] = {
        "python": sys.version.split()[0], "torch": torch.__version__, "transformers": transformers.__version__,
        "sparsed": sparsed.__version__, "git_commit": git_commit(),
        "cuda": torch.version.cuda, "cudnn": str(torch.backends.cudnn.version()) if torch.cuda.is_available() else None,
    }
    try:
        import triton

        out["triton"] = triton.__version__
    except Exception:  # noqa: BLE001
        out["triton"] = None
    return out


def device_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"type": device.type, "platform": platform.platform(), "cpu_count": os.cpu_count()}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info |= {"name": p.name, "memory_gib": round(p.total_memory / 2**30, 1), "sm_count": p.multi_processor_count}
    else:
        info["name"] = platform.processor() or platform.machine()
        info["threads"] = torch.get_num_threads()
    return info


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> dict[str, float]:
    if device.type == "cuda":
        return {"gpu_peak_allocated_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 3)}
    return {"cpu_peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)}

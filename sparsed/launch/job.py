"""One job of run.py, single or in a sweep: skip it when done, record it when it fails, never lose a result.

* ``result.json`` with ``"status": "ok"`` means done: a relaunch skips the job and says so.
* A job that raises (bad checkpoint, out of memory, a crash inside a method) writes ``result.json`` with
  ``"status": "failed"`` and the error; in a sweep the next job goes on. A relaunch runs it again, after
  moving the old record aside (``result.failed-N.json``), so nothing is overwritten.
* A job killed at any moment leaves no ``result.json`` (results are written to a temporary file and
  linked into place); a relaunch runs it again, and an evaluation resumes from its request cache.
* An unreadable ``result.json`` (not written by this code, e.g. a copy cut short) is moved aside as
  ``result.corrupt-N.json``, and one made by other settings (a preset edited since) as
  ``result.stale-N.json``; the job runs again. Files the result names beside itself (the attention record of
  ``record.attention=true``) are moved aside with it, under the same ``.<state>-N`` suffix.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sparsed.config_errors import ConfigError
from sparsed.results import versions, write_json_exclusive

log = logging.getLogger("sparsed")
RESULT = "result.json"
OK, SKIPPED, FAILED = "ok", "skipped", "failed"
# settings that do not change a result: they may differ between the launch that wrote it and a relaunch
# (the same keys are left out of job folder names, configs/config.yaml)
VOLATILE = ("model.path", "model.tokenizer", "task.data_dir", "task.qa_dir", "task.essay_path", "task.cache_dir",
            "task.data_cache_dir", "run.progress", "run.wandb", "run.wandb_project")
_exit = {"code": 0}


def exit_code() -> int:
    """2 when the last single run of this process stopped on a bad setting, else 0."""
    return _exit["code"]


def result_state(path: Path) -> str:
    """``ok``, ``failed``, ``corrupt`` or ``missing`` for a result file."""
    if not path.is_file():
        return "missing"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return "corrupt"
    if not isinstance(data, dict) or "config" not in data:
        return "corrupt"
    status = data.get("status", OK)  # results written before the status field existed are complete
    return status if status in (OK, FAILED) else "corrupt"


def comparable(config: dict[str, Any]) -> dict[str, Any]:
    """A resolved config without its VOLATILE keys."""
    out = json.loads(json.dumps(config, default=str))
    for key in VOLATILE:
        node, _, leaf = key.rpartition(".")
        parent = out.get(node) if isinstance(out, dict) else None
        if isinstance(parent, dict):
            parent.pop(leaf, None)
    return out


def same_config(path: Path, cfg: DictConfig) -> bool:
    """Whether the result at ``path`` was made by this config (a preset edited since would differ)."""
    stored = json.loads(path.read_text(encoding="utf-8")).get("config", {})
    return comparable(stored) == comparable(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]


def companions(path: Path) -> list[Path]:
    """The files a result names beside itself (its attention record, ``record.attention``) that exist."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return []
    record = data.get("attention_record") if isinstance(data, dict) else None
    name = record.get("path") if isinstance(record, dict) else None
    # by name in the result's folder: the stored path may be another machine's (the folder was copied)
    found = path.parent / Path(name).name if isinstance(name, str) and name else None
    return [found] if found is not None and found.is_file() else []


def _aside(path: Path, state: str, n: int) -> Path:
    return path.with_name(f"{path.stem}.{state}-{n}{path.suffix}")


def set_aside(path: Path, state: str) -> Path:
    """Rename ``result.json`` to the first free ``result.<state>-N.json``, and the files it names beside it
    to ``<stem>.<state>-N<suffix>`` (same N), so that the rerun's own files never replace them."""
    files = [path, *companions(path)]
    n = 1
    while any(_aside(f, state, n).exists() for f in files):
        n += 1
    for f in files[1:]:
        f.rename(_aside(f, state, n))
    target = _aside(path, state, n)
    path.rename(target)
    return target


def bad_setting(exc: BaseException) -> str | None:
    """The one-line message of a bad setting; None for anything else (a bug keeps its traceback).

    Inside a job only ConfigError counts: Hydra's composition errors happen before a job starts, and an
    OmegaConf error raised by the code itself is a bug, not the user's input.
    """
    return str(exc) if isinstance(exc, ConfigError) else None


def failure_record(cfg: DictConfig, exc: BaseException, started: float) -> dict[str, Any]:
    line = bad_setting(exc)
    return {
        "status": FAILED,
        "error": {"type": type(exc).__name__, "message": line or str(exc), "bad_setting": line is not None,
                  "traceback": "".join(traceback.format_exception(exc))},
        "config": OmegaConf.to_container(cfg, resolve=True),
        "started_at": round(started, 3), "failed_at": round(time.time(), 3),
        "versions": versions(),
    }


def outcome(status: str, out_dir: Path, error: str | None = None) -> dict[str, Any]:
    """What a job returns to the sweeper (plain data: it may travel back from a SLURM node)."""
    return {"status": status, "dir": str(out_dir), "error": error}


def run_job(cfg: DictConfig, out_dir: str | Path, *, multirun: bool, overrides: list[str] | None = None,
            rank: int = 0) -> dict[str, Any]:
    """Run ``cfg`` into ``out_dir`` unless it is done there; in a sweep, failures are returned, not raised."""
    from sparsed.launch.checks import check_override_types
    from sparsed.runner import run, summary_lines

    out_dir = Path(out_dir)
    path = out_dir / RESULT
    state = result_state(path)
    if state == OK and not same_config(path, cfg):
        state = "stale"  # same folder, other settings: kept aside, never taken for this config's result
    if state == OK:
        print(f"skipped    {path}: complete from an earlier launch (move it away to run the job again)")
        return outcome(SKIPPED, out_dir)
    if state in (FAILED, "corrupt", "stale") and rank == 0:
        kept = set_aside(path, state)
        log.warning("%s result of an earlier launch kept as %s; running the job again", state, kept.name)
    started = time.time()
    try:
        check_override_types(overrides or [])
        result = run(cfg, out_dir)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure is recorded; single runs re-raise it below
        if rank == 0:
            write_json_exclusive(path, failure_record(cfg, exc, started))
        line = bad_setting(exc)
        if not multirun:
            if line is None:
                raise  # a bug: its traceback
            # said here rather than raised, so that Hydra adds no lines of its own
            print(f"error: {line}", file=sys.stderr)
            _exit["code"] = 2
            return outcome(FAILED, out_dir, line)
        message = line or f"{type(exc).__name__}: {exc}"
        print(f"failed     {out_dir}: {message}", file=sys.stderr)
        log.error("job failed:\n%s", "".join(traceback.format_exception(exc)))
        return outcome(FAILED, out_dir, message)
    if rank == 0:
        for line in summary_lines(result):
            print(line)
        if cfg.run.wandb:
            from sparsed.tracking import track

            track(result, cfg, out_dir)
    return outcome(OK, out_dir)


def run_hydra_job(cfg: DictConfig) -> dict[str, Any]:
    """The body of run.py's ``@hydra.main`` function: this job's folder, mode and overrides from Hydra."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from sparsed.eval import distributed

    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    try:
        rank, _ = distributed.init_from_env(cfg)  # torchrun: one process per device, one task between them
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        _exit["code"] = 2
        return outcome(FAILED, Path(hc.runtime.output_dir), str(exc))
    out_dir = distributed.broadcast(hc.runtime.output_dir)  # every rank works in rank 0's folder
    return run_job(cfg, out_dir, multirun=multirun, overrides=list(hc.overrides.task), rank=rank)

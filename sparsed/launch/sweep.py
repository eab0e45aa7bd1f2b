"""What the sweeper adds to Hydra's basic one: every job checked before any launches, and a closing report.

A sweep whose job 17 has a bad setting stops before job 1 starts (one line, exit code 2). At the end,
one line per failed job and a count of what ran, was skipped (done before) and failed; the same goes to
``<sweep dir>/sweep_summary.json``. ``exit_code()`` is what run.py exits with: 1 when a job failed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from sparsed.config_errors import ConfigError
from sparsed.launch.errors import one_line
from sparsed.results import write_json_atomic

_last: dict[str, Any] = {}


def check_jobs(config_loader: Any, master: DictConfig, batch: Sequence[Sequence[str]]) -> None:  # noqa: ANN401
    """Compose and check every job of ``batch``; the first bad one raises ConfigError naming the job."""
    from sparsed.launch.checks import check_override_types, check_settings

    for i, overrides in enumerate(batch):
        try:
            check_override_types(overrides)
            cfg = config_loader.load_sweep_config(master_config=master, sweep_overrides=list(overrides))
            check_settings(cfg)
        except Exception as exc:
            line = one_line(exc)
            if line is None:
                raise
            raise ConfigError(f"job {i} of the sweep ({' '.join(overrides)}): {line}") from exc


def report(master: DictConfig, returns: Sequence[Any]) -> dict[str, Any]:  # noqa: ANN401 - JobReturns
    """Print and save what happened to each job; remember the exit code."""
    jobs = []
    for r in returns:
        value = r.return_value
        jobs.append(value if isinstance(value, dict) and "status" in value else
                    {"status": "failed", "dir": None, "error": f"the job returned {value!r}"})
    counts = {s: sum(j["status"] == s for j in jobs) for s in ("ok", "skipped", "failed")}
    sweep_dir = Path(master.hydra.sweep.dir)
    summary = {"sweep_dir": str(sweep_dir), "jobs": len(jobs), **counts, "finished_at": round(time.time(), 3),
               "results": jobs}
    write_json_atomic(sweep_dir / "sweep_summary.json", summary)
    for j in jobs:
        if j["status"] == "failed":
            print(f"failed     {j['dir']}: {j['error']}")
    print(f"sweep      {len(jobs)} jobs in {sweep_dir}: {counts['ok']} ran, {counts['skipped']} skipped "
          f"(complete before), {counts['failed']} failed; {sweep_dir / 'sweep_summary.json'}")
    _last.clear()
    _last.update(summary)
    return summary


def exit_code() -> int:
    """1 when the last sweep of this process had a failed job, else 0."""
    return 1 if _last.get("failed") else 0

"""run.py with faults injected (used by tests/test_sweep_faults.py; not a test itself).

FAULT_PAUSE=<event>:<gen.seed> stops the job of that seed at <event> until it is killed, after writing
FAULT_MARKER: ``during`` (inside the generation), ``writing`` (the result half written to its temporary
file), ``between`` (the result written, the next job not started). FAULT_FAIL_SEED=<seed> makes the
generation of that seed raise, as a crash inside a method would. FAULT_LOG gets one line per result written.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # as for run.py, whose folder is on the path

import sparsed.results as results  # noqa: E402
import sparsed.runner as runner  # noqa: E402

PAUSE = os.environ.get("FAULT_PAUSE", "")
FAIL_SEED = os.environ.get("FAULT_FAIL_SEED")


def pause(event: str, seed: int) -> None:
    if PAUSE == f"{event}:{seed}":
        Path(os.environ["FAULT_MARKER"]).write_text(event)
        time.sleep(600)  # until the test kills the process


real_sample = runner.sample


def sample(model, ids, gen, *args, **kwargs):  # noqa: ANN001, ANN201
    pause("during", gen.seed)
    if FAIL_SEED is not None and gen.seed == int(FAIL_SEED):
        raise RuntimeError(f"simulated crash inside the attention method (seed {gen.seed})")
    return real_sample(model, ids, gen, *args, **kwargs)


def write_result(path, data):  # noqa: ANN001, ANN201
    seed = data["config"]["gen"]["seed"]
    if PAUSE == f"writing:{seed}":
        text = json.dumps(data, indent=2, default=str)
        tmp = Path(path).with_name(f".{Path(path).name}.{os.getpid()}.tmp")
        tmp.write_text(text[: len(text) // 2])  # the state of a write cut off halfway
        pause("writing", seed)
    written = results.write_json_exclusive(path, data)
    with open(os.environ["FAULT_LOG"], "a") as f:
        f.write(f"{seed} {data['config']['attention']['name']} {Path(written).name}\n")
    pause("between", seed)
    return written


runner.sample = sample
runner.write_json_exclusive = write_result
sys.argv = [str(ROOT / "run.py"), *sys.argv[1:]]
runpy.run_path(str(ROOT / "run.py"), run_name="__main__")

"""Run every analysis notebook headless and check what it produced (``make figures``).

Each notebook (``analysis/[0-9][0-9]_*.py``, jupytext percent format, so plain Python) runs as its own
process with its parameters in the environment (``sparsed.analysis.notebook``), two at a time by default;
afterwards every figure it lists must exist and every statistic it reports must be finite.

    python -m sparsed.analysis.figures                                   # the shipped small model, CPU
    python -m sparsed.analysis.figures --size ci --out /tmp/figs         # seconds: the CI test
    python -m sparsed.analysis.figures --model "model=llada model.path=/ckpt/LLaDA-1.5 model.device=cuda" \\
        --size full --out analysis/figures_llada
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sparsed.analysis.notebook import flatten
from sparsed.analysis.sizes import SIZES

ROOT = Path(__file__).resolve().parents[2]
# the notebook file -> the name it writes its statistics under
NOTEBOOKS = {"01_head_patterns.py": "head_patterns", "02_step_similarity.py": "step_similarity",
             "03_early_steps.py": "early_steps", "04_hyperparameters.py": "hyperparameters",
             "05_tables_latency.py": "tables"}
LONGEST_FIRST = ["03_early_steps.py", "02_step_similarity.py", "01_head_patterns.py", "04_hyperparameters.py",
                 "05_tables_latency.py"]


@dataclass
class Outcome:
    notebook: str
    seconds: float
    returncode: int
    problems: list[str]
    log: str


def check_outputs(out: Path, name: str) -> list[str]:
    """What is wrong with a notebook's outputs: a missing statistics file or figure, a non-finite number."""
    path = out / f"{name}.json"
    if not path.is_file():
        return [f"{path} was not written"]
    data = json.loads(path.read_text())
    problems = [f"figure {f} missing" for f in data["figures"] if not (out / f).is_file() or (out / f).stat().st_size == 0]
    if not any(f.endswith(".png") for f in data["figures"]):
        problems.append("no PNG figure")
    for key, v in flatten(data["stats"]).items():
        if isinstance(v, bool) or not isinstance(v, int | float):
            continue
        if not math.isfinite(v):
            problems.append(f"statistic {key} = {v}")
    return problems


def run_notebook(nb: str, env: dict[str, str], out: Path, timeout: float | None) -> Outcome:
    t0 = time.time()
    try:
        proc = subprocess.run([sys.executable, str(ROOT / "analysis" / nb)], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=timeout)
        code, log = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        code, log = -1, f"timed out after {timeout} s\n{exc.stdout or ''}{exc.stderr or ''}"
    problems = check_outputs(out, NOTEBOOKS[nb]) if code == 0 else [f"exit code {code}"]
    return Outcome(nb, time.time() - t0, code, problems, log)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="model=small", help="Hydra overrides naming the model (as for run.py)")
    ap.add_argument("--size", default="small", choices=SIZES)
    ap.add_argument("--out", default=str(ROOT / "analysis" / "figures"))
    ap.add_argument("--jobs", type=int, default=2, help="notebooks run at the same time")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads per notebook (0: torch's default)")
    ap.add_argument("--only", nargs="*", default=None, help="notebook files to run (default: all)")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per notebook")
    args = ap.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, SPARSED_FIG_MODEL=args.model, SPARSED_FIG_SIZE=args.size, SPARSED_FIG_OUT=str(out),
               MPLBACKEND="Agg", PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               HF_HUB_OFFLINE=os.environ.get("HF_HUB_OFFLINE", "1"), PYTHONWARNINGS="ignore")
    if args.threads:
        env["SPARSED_FIG_THREADS"] = str(args.threads)
    todo = [nb for nb in LONGEST_FIRST if args.only is None or nb in args.only]
    t0 = time.time()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        outcomes = list(pool.map(lambda nb: run_notebook(nb, env, out, args.timeout), todo))
    failed = False
    for o in sorted(outcomes, key=lambda o: o.notebook):
        status = "ok" if not o.problems else "FAILED: " + "; ".join(o.problems)
        print(f"{o.notebook:24s} {o.seconds:7.1f} s  {status}")
        if o.problems:
            failed = True
            print("\n".join("    " + line for line in o.log.strip().splitlines()[-25:]))
    print(f"{len(outcomes)} notebooks in {time.time() - t0:.1f} s ({args.size}, {args.model}) -> {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

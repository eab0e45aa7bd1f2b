"""Run ``eval_ruler_small.py`` as several processes over (length, row) jobs, then merge their JSON files.

A 10M-parameter model leaves a GPU idle between kernel launches, so one process per few rows fills it;
each worker writes its own JSON after every cell (a worker that is killed keeps what it finished) and the
merged file has the layout of one ``eval_ruler_small.py`` run (``--markdown`` writes its table).

    python scripts/eval_parallel.py --workers 8 --out results/x.json --markdown results/x.md -- \\
        --model M --table losa --lengths 2048 4096 --limit 50 --batch 50
    python scripts/eval_parallel.py --merge-only --out results/x.json   # merge the parts already there
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from eval_ruler_small import ROWS, TABLES, markdown  # noqa: E402

from sparsed.results import write_json_atomic  # noqa: E402


def split_jobs(lengths: list[int], rows: list[str], workers: int) -> list[tuple[int, list[str]]]:
    """(length, rows) per worker: longer lengths first (they take longest), rows dealt round-robin."""
    jobs = [(L, r) for L in sorted(lengths, reverse=True) for r in rows]
    buckets: list[dict[int, list[str]]] = [{} for _ in range(min(workers, len(jobs)))]
    for i, (L, r) in enumerate(jobs):
        buckets[i % len(buckets)].setdefault(L, []).append(r)
    return [(L, rs) for b in buckets for L, rs in b.items()]


def merge(parts: list[Path]) -> dict:
    """One eval_ruler_small.py result from several: cells and contexts united, the first part's settings."""
    merged: dict = {}
    for p in parts:
        d = json.loads(p.read_text())
        if not merged:
            merged = {k: v for k, v in d.items() if k not in ("cells", "context", "rows", "scores", "summary")}
            merged |= {"cells": {}, "context": {}, "rows": {}, "commands": []}
        merged["commands"].append(d["command"])
        merged["rows"] |= d["rows"]
        merged["elapsed_s"] = max(merged["elapsed_s"], d["elapsed_s"])
        merged["stopped_by_deadline"] = merged["stopped_by_deadline"] or d["stopped_by_deadline"]
        for L, by_t in d["context"].items():
            merged["context"].setdefault(L, {}).update(by_t)
        for L, by_r in d["cells"].items():
            for r, by_t in by_r.items():
                merged["cells"].setdefault(L, {}).setdefault(r, {}).update(by_t)
    order = {r: i for i, r in enumerate(ROWS)}  # rows in the script's order, lengths ascending
    merged["cells"] = {L: dict(sorted(merged["cells"][L].items(), key=lambda kv: order.get(kv[0], 1 << 30)))
                       for L in sorted(merged["cells"], key=int)}
    return merged


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--out", required=True, help="merged JSON; the parts go to <out stem>.parts/")
    ap.add_argument("--markdown", default=None)
    ap.add_argument("--merge-only", action="store_true")
    ap.add_argument("eval_args", nargs=argparse.REMAINDER, help="-- then eval_ruler_small.py arguments "
                    "(--rows or --table, --lengths, ...; not --out)")
    a = ap.parse_args()
    out = Path(a.out)
    parts_dir = out.with_suffix("").with_name(out.stem + ".parts")
    if not a.merge_only:
        rest = a.eval_args[1:] if a.eval_args[:1] == ["--"] else a.eval_args
        sub = argparse.ArgumentParser(add_help=False)
        sub.add_argument("--rows", "--methods", nargs="*", dest="rows", default=None)
        sub.add_argument("--table", default=None)
        sub.add_argument("--lengths", type=int, nargs="+", default=[2048, 4096])
        known, passthrough = sub.parse_known_args(rest)
        if known.table is not None and known.table not in TABLES:
            sys.exit(f"error: --table={known.table}; choose one of {sorted(TABLES)}")
        rows = known.rows if known.rows is not None else TABLES[known.table or "card"]
        unknown = [r for r in rows if r not in ROWS]
        if unknown or a.workers < 1:
            sys.exit(f"error: unknown rows {unknown} or --workers={a.workers} < 1; known rows: {', '.join(ROWS)}")
        parts_dir.mkdir(parents=True, exist_ok=True)
        procs = []
        for i, (L, rs) in enumerate(split_jobs(known.lengths, rows, a.workers)):
            cmd = [sys.executable, str(HERE / "eval_ruler_small.py"), *passthrough, "--lengths", str(L), "--rows",
                   *rs, "--resume", "--out", str(parts_dir / f"part{i:02d}_{L}.json")]
            log = open(parts_dir / f"part{i:02d}_{L}.log", "w")  # noqa: SIM115 - open for the child's lifetime
            procs.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log))
            print(f"worker {i}: L={L} rows {' '.join(rs)}", flush=True)
        t0 = time.time()
        for p, log in procs:
            p.wait()
            log.close()
        failed = [i for i, (p, _) in enumerate(procs) if p.returncode != 0]
        print(f"{len(procs)} workers done in {time.time() - t0:.0f}s; failed: {failed or 'none'}", flush=True)
    parts = sorted(parts_dir.glob("part*.json"))
    if not parts:
        sys.exit(f"error: no parts in {parts_dir}")
    merged = merge(parts)
    write_json_atomic(out, merged)
    if a.markdown:
        Path(a.markdown).write_text(markdown(merged))
    print(markdown(merged))


if __name__ == "__main__":
    main()

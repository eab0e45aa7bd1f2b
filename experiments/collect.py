"""Collect the result.json files of accuracy runs into the paper's tables (markdown on stdout).

    python experiments/collect.py multirun/table1              # Table 1: one row per model x method
    python experiments/collect.py multirun/table1 --per-task   # Table 4: RULER per task, per length

A RULER score marked * averages fewer than 13 tasks (e.g. QA data missing); result.json lists which.
Table 1's "Avg." is the mean of the five benchmark columns, given only when all five are present.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

COLUMNS = ("MMLU", "GSM8K", "HumanEval", "RULER-4k", "RULER-8k")
RULER_ORDER = ("niah_single_1", "niah_single_2", "niah_single_3", "niah_multikey_1", "niah_multikey_2", "niah_multikey_3",
               "niah_multiquery", "niah_multivalue", "vt", "cwe", "fwe", "qa_1", "qa_2")  # Table 4's order
SPARSED_DEFAULTS = {"skip": 0.2, "compat": "reference", "reuse": True, "isolated": True}


def method_label(cfg: dict[str, Any]) -> str:
    name = cfg["attention"]["name"]
    if name != "sparsed":
        return name
    changed = [f"{k}={cfg['sparsed'][k]}" for k, v in SPARSED_DEFAULTS.items() if cfg["sparsed"].get(k) != v]
    return "sparsed" + (f" ({', '.join(changed)})" if changed else "")


def column(result: dict[str, Any]) -> str:
    task = result["task"]
    if task == "ruler":
        length = result["config"]["prompt"]["length"]
        return f"RULER-{length // 1024}k" if length % 1024 == 0 else f"RULER-{length}"
    return {"mmlu": "MMLU", "gsm8k": "GSM8K", "humaneval": "HumanEval"}[task]


def load(dirs: list[str]) -> list[dict[str, Any]]:
    out = []
    for d in dirs:
        for path in sorted(Path(d).rglob("result.json")):
            r = json.loads(path.read_text())
            if "task" in r and "average" in r:  # accuracy runs only (not latency)
                out.append(r)
    return out


def fmt(v: float | None, partial: bool = False) -> str:
    return "-" if v is None else f"{v:.2f}{'*' if partial else ''}"


def table1(results: list[dict[str, Any]]) -> str:
    rows: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    values: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    for r in results:
        key = (r["config"]["model"]["name"], method_label(r["config"]))
        col = column(r)
        rows[key][col] = fmt(r["average"], not r.get("complete", True))
        if r["average"] is not None:
            values[key][col] = r["average"]
    cols = [c for c in COLUMNS if any(c in v for v in rows.values())] + sorted(
        {c for v in rows.values() for c in v} - set(COLUMNS))
    lines = ["| Model | Method | " + " | ".join(cols) + " | Avg. |", "|---|---|" + "---|" * (len(cols) + 1)]
    for key in sorted(rows):
        v = values[key]
        avg = sum(v[c] for c in COLUMNS) / len(COLUMNS) if all(c in v for c in COLUMNS) else None
        lines.append(f"| {key[0]} | {key[1]} | " + " | ".join(rows[key].get(c, "-") for c in cols) + f" | {fmt(avg)} |")
    return "\n".join(lines)


def table4(results: list[dict[str, Any]]) -> str:
    lines = ["| Model | Method | Length | " + " | ".join(RULER_ORDER) + " | AVG |", "|---|---|---|" + "---|" * 14]
    ruler = [r for r in results if r["task"] == "ruler"]
    ruler.sort(key=lambda r: (r["config"]["model"]["name"], r["config"]["prompt"]["length"], method_label(r["config"])))
    for r in ruler:
        cells = " | ".join(fmt(r["scores"].get(t)) for t in RULER_ORDER)
        lines.append(f"| {r['config']['model']['name']} | {method_label(r['config'])} | {column(r)} | {cells} | "
                     f"{fmt(r['average'], not r.get('complete', True))} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirs", nargs="+", help="run or sweep folders (searched recursively for result.json)")
    ap.add_argument("--per-task", action="store_true", help="RULER scores per task (Table 4 / Table 5)")
    args = ap.parse_args()
    results = load(args.dirs)
    if not results:
        raise SystemExit(f"no accuracy result.json under {', '.join(args.dirs)}")
    print(table4(results) if args.per_task else table1(results))


if __name__ == "__main__":
    main()

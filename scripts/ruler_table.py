"""RULER tables of methods and caches on one model, through run.py's own code (one result.json per cell).

Each cell is exactly ``python run.py task=ruler prompt.length=<L> <overrides of the row>`` with the offline
RULER tasks; a cell whose result.json is complete is skipped, so an interrupted table resumes (and an
interrupted cell resumes from its request cache). Accuracy runs batch (rows are independent of the
batch, see tests/test_kv_cache.py); latency per generated token is measured apart, one sequence at a
time on ``--latency-samples`` samples per task, so that it is the latency a single user sees.

    python scripts/ruler_table.py --table cache --lengths 2048 4096 --limit 50 --out results/cache_small
    python scripts/ruler_table.py --table losa --lengths 2048 4096 --limit 50 --out results/losa_small
    python scripts/ruler_table.py --table cache --report-only --out results/cache_small   # the markdown only
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OFFLINE_TASKS = ["niah_single_1", "niah_single_2", "niah_single_3", "niah_multikey_1", "niah_multikey_2",
                 "niah_multikey_3", "niah_multiquery", "niah_multivalue", "vt", "cwe", "fwe"]
SHORT = {"niah_single_1": "S1", "niah_single_2": "S2", "niah_single_3": "S3", "niah_multikey_1": "MK1",
         "niah_multikey_2": "MK2", "niah_multikey_3": "MK3", "niah_multiquery": "MQ", "niah_multivalue": "MV",
         "vt": "VT", "cwe": "CWE", "fwe": "FWE"}


def sparsed_block(length: int) -> str:
    return f"sparsed.block_size={64 if length <= 2048 else 128}"  # the small model's card


def cache_rows(length: int) -> dict[str, list[str]]:
    dense = ["attention=dense"]
    return {
        "dense (no cache)": dense,
        "sparsed (no cache)": ["attention=sparsed", sparsed_block(length)],
        "prefix": [*dense, "cache=prefix"],
        "prefix + threshold 0.9": [*dense, "cache=prefix", "gen.threshold=0.9"],
        "dual": [*dense, "cache=dual"],
        "dual + threshold 0.9": [*dense, "cache=dual", "gen.threshold=0.9"],
        "dkv_decode (refresh 8)": [*dense, "cache=dkv_decode", "dkv_decode.refresh_interval=8"],
        "dkv_greedy (refresh 2, window 4)": [*dense, "cache=dkv_greedy", "dkv_greedy.refresh_interval=2",
                                             "dkv_greedy.window=4"],
    }


def losa_rows(length: int) -> dict[str, list[str]]:
    rows = {"dense (prefix cache)": ["attention=dense", "cache=prefix"]}
    for budget in (128, 256, 512, 1024):
        rows[f"quest b{budget}"] = ["attention=quest", "cache=prefix", f"quest.budget={budget}"]
        rows[f"sparsed_cache b{budget}"] = ["attention=sparsed_cache", "cache=prefix", f"sparsed_cache.budget={budget}",
                                            "sparsed_cache.block_size=32"]
        rows[f"losa top-5 b{budget}"] = ["attention=losa", "cache=prefix", f"losa.budget={budget}"]
        rows[f"losa 50% b{budget}"] = ["attention=losa", "cache=prefix", f"losa.budget={budget}",
                                       "losa.active_fraction=0.5"]
    return rows


TABLES = {"cache": cache_rows, "losa": losa_rows}


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def run_cell(overrides: list[str], out_dir: Path) -> dict[str, Any]:
    from hydra import compose, initialize_config_dir

    from sparsed.config import register_schemas
    from sparsed.runner import run

    path = out_dir / "result.json"
    if path.is_file():
        done = json.loads(path.read_text())
        if done.get("complete") and done.get("config_overrides") == overrides:
            print(f"  skip (complete): {out_dir}", flush=True)
            return done
    register_schemas()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    t0 = time.time()
    result = run(cfg, out_dir)
    result["config_overrides"] = overrides
    result["wall_s"] = round(time.time() - t0, 1)
    from sparsed.results import write_json_atomic

    write_json_atomic(path, {k: v for k, v in result.items() if k != "result_path"})
    return result


def per_token_latency(result: dict[str, Any]) -> float | None:
    """Seconds of generation per generated token, over the cell's sequences (batch 1)."""
    tokens = sum(d["n"] * d["gen"]["gen_length"] for d in result["details"].values())
    return result["timing"]["generation_s"] / tokens if tokens else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", choices=sorted(TABLES), required=True)
    ap.add_argument("--lengths", type=int, nargs="+", default=[2048, 4096])
    ap.add_argument("--limit", type=int, default=50, help="samples per task for accuracy")
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--latency-samples", type=int, default=2, help="samples per task timed one at a time (0: none)")
    ap.add_argument("--rows", nargs="*", help="only these rows (names as in the table)")
    ap.add_argument("--skip-accuracy", nargs="*", default=[], help="rows whose accuracy is not run here")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--model", default="small")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    out = Path(args.out)
    common = [f"model={args.model}", "task=ruler", f"task.tasks=[{','.join(OFFLINE_TASKS)}]", "run.progress=false",
              "run.warmup=false"]
    if not args.report_only:
        for length in args.lengths:
            for name, over in TABLES[args.table](length).items():
                if args.rows and name not in args.rows:
                    continue
                base = [*common, f"prompt.length={length}", *over]
                if name not in args.skip_accuracy:
                    print(f"[{length}] {name}: accuracy, {args.limit} per task", flush=True)
                    run_cell([*base, f"task.limit={args.limit}", f"task.batch_size={args.batch}"],
                             out / str(length) / slug(name) / "accuracy")
                if args.latency_samples:
                    print(f"[{length}] {name}: latency, {args.latency_samples} per task, batch 1", flush=True)
                    run_cell([*base, f"task.limit={args.latency_samples}", "task.batch_size=1"],
                             out / str(length) / slug(name) / "latency")
    write_report(args, out)


def _load(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def write_report(args: argparse.Namespace, out: Path) -> None:
    from sparsed.results import device_info, versions, write_json_atomic

    lines = [f"# RULER on `model={args.model}`: {args.table} table", "",
             f"Command: `python scripts/ruler_table.py --table {args.table} --lengths {' '.join(map(str, args.lengths))} "
             f"--limit {args.limit} --batch {args.batch} --latency-samples {args.latency_samples} --out {args.out}`", "",
             "Accuracy: RULER's metrics, offline tasks, evaluation seed 0. Latency: generation seconds per generated "
             "token, one sequence at a time (warm-up excluded: the first cell of a process pays allocator warm-up).", ""]
    raw: dict[str, Any] = {}
    for length in args.lengths:
        rows = TABLES[args.table](length)
        lines += [f"## {length} tokens", "",
                  "| method | " + " | ".join(SHORT[t] for t in OFFLINE_TASKS) + " | avg | n/task | s / token | speed-up "
                  "| NFE / seq | KV density |",
                  "|---" * (len(OFFLINE_TASKS) + 7) + "|"]
        base_lat = None
        for name in rows:
            acc = _load(out / str(length) / slug(name) / "accuracy" / "result.json")
            lat = _load(out / str(length) / slug(name) / "latency" / "result.json")
            t = per_token_latency(lat) if lat else None
            if base_lat is None and t is not None:
                base_lat = t
            cells = [f"{acc['scores'][task]:.1f}" if acc and acc["scores"].get(task) is not None else "-"
                     for task in OFFLINE_TASKS]
            avg = f"**{acc['average']:.1f}**" if acc and acc.get("average") is not None else "-"
            n = acc["details"][OFFLINE_TASKS[0]]["n"] if acc else "-"
            nfe = f"{acc['timing']['nfe'] * 1.0 / max(1, acc['timing']['sequences']) * acc['settings']['batch_size']:.1f}" \
                if acc else "-"
            kv = acc["attention"].get("kv_density") if acc else None
            speed = f"{base_lat / t:.1f}x" if t and base_lat else "-"
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {avg} | {n} | "
                         f"{'-' if t is None else f'{t:.4f}'} | {speed} | {nfe} | "
                         f"{'-' if kv is None else f'{100 * kv:.2f} %'} |")
            raw[f"{length}/{name}"] = {"accuracy": acc and {k: acc[k] for k in ("scores", "average", "timing", "attention")},
                                       "latency_s_per_token": t,
                                       "latency": lat and {k: lat[k] for k in ("timing", "attention")}}
        lines.append("")
    lines += ["Speed-up: relative to the table's first row (the same length). NFE / seq: model forwards per "
              "sequence (a batch's forward counts once per batch, so this is forwards per batch x batch size / "
              "sequences). KV density (cached methods): cached keys loaded per step after the union, over all cached "
              "keys, sparse steps only.", ""]
    for r in raw.values():
        acc = r.get("accuracy")
        if acc:
            lines.append(f"Device: {acc.get('device', {}) or ''}")
            break
    (out / "README.md").parent.mkdir(parents=True, exist_ok=True)
    (out / "README.md").write_text("\n".join(lines) + "\n")
    write_json_atomic(out / "table.json", {"rows": raw, "device": device_info(__import__("torch").device("cpu")),
                                           "versions": versions(), "args": vars(args)})
    print("\n".join(lines))


if __name__ == "__main__":
    main()

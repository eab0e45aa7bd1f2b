"""experiments/collect.py rebuilds the paper's tables from a sweep folder, marking failed and missing cells."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("collect", ROOT / "experiments" / "collect.py")  # the command line
collect = importlib.util.module_from_spec(spec)
sys.modules["collect"] = collect  # its dataclasses look their module up
spec.loader.exec_module(collect)

TASKS = {"MMLU": ("mmlu", None), "GSM8K": ("gsm8k", None), "HumanEval": ("humaneval", None),
         "RULER-4k": ("ruler", 4096), "RULER-8k": ("ruler", 8192)}


def job(sweep: Path, row: str, column: str, value: float, status: str = "ok", steps: int = 128) -> None:
    """A job folder as run.py leaves it: result.json and Hydra's record of the job's choices."""
    task, length = TASKS.get(column, ("latency", 65536))
    folder = sweep / f"{row}-{column}-{steps}"
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": {"row": row}}}}))
    cfg = {"model": {"arch": "llada", "name": "llada_1_5"}, "task": {"name": task}, "prompt": {"length": length},
           "attention": {"name": "sparsed" if row.startswith(("sparsed", "no_")) else "dense"},
           "cache": {"name": "none"}, "gen": {"steps": steps}, "sparsed": {"skip": 0.2, "select": 0.3}}
    result = {"status": status, "config": cfg}
    if status == "failed":
        result["error"] = {"message": "CUDA out of memory"}
    elif task == "latency":
        result["latency"] = {"median_total_s": value}
    else:
        scores = {t: value for t in collect.RULER_ORDER} if task == "ruler" else {task: value}
        result |= {"average": value, "scores": scores, "complete": True}
    (folder / "result.json").write_text(json.dumps(result))


def test_table1_cells_deltas_paper_numbers_failed_and_missing(tmp_path, capsys):
    sweep = tmp_path / "table1_llada"
    for col, v in zip(collect.BENCHMARKS, (60.0, 80.0, 40.0, 90.0, 60.0), strict=True):
        job(sweep, "dense", col, v)
        job(sweep, "sparsed", col, v + 1)
    job(sweep, "fast_dllm", "MMLU", 0, status="failed")
    (sweep / "junk").mkdir()
    (sweep / "junk" / "result.json").write_text('{"status": "ok", "conf')  # not a whole result: ignored
    assert collect.main([str(sweep)]) == 0
    out = capsys.readouterr().out
    table = (sweep / "tables" / "table1.md").read_text()
    sparsed = next(line for line in table.splitlines() if line.startswith("| + SparseD"))
    assert "61.00 [+1.00] (64.14)" in sparsed and "91.00 [+1.00] (90.89)" in sparsed
    assert sparsed.endswith("67.00 [+1.00] (67.62) |")  # the average of five, against dense's
    fast = next(line for line in table.splitlines() if line.startswith("| + Fast-dLLM"))
    assert "failed (63.17)" in fast and "missing (82.64)" in fast  # failed MMLU job, GSM8K never ran
    assert "failed: " in out and "CUDA out of memory" in out
    rows = list(csv.DictReader((sweep / "tables" / "table1.csv").open()))
    cell = next(r for r in rows if r["row"] == "sparsed" and r["column"] == "RULER-4k")
    assert (float(cell["ours"]), float(cell["paper"]), float(cell["delta_dense"]), cell["status"]) == (91.0, 90.89, 1.0, "ok")
    assert next(r for r in rows if r["row"] == "dkv_greedy" and r["column"] == "MMLU")["status"] == "missing"
    t4 = (sweep / "tables" / "table4.md").read_text()
    assert "| + SparseD | 91.00 (100.00) |" in t4


def test_table2_and_figure_data(tmp_path):
    sweep = tmp_path / "sweep"
    job(sweep, "dense", "RULER-4k", 90.0)
    job(sweep, "no_reuse", "RULER-4k", 89.0)
    for steps, dense, sparse in ((128, 100.0, 80.0), (1024, 900.0, 600.0)):
        job(sweep, "dense", "latency-64k", dense, steps=steps)
        job(sweep, "sparsed", "latency-64k", sparse, steps=steps)
    assert collect.main([str(sweep), "--table", "table2", "--table", "fig5"]) == 0
    t2 = (sweep / "tables" / "table2.md").read_text()
    assert "| - Sparse Reusing | 89.00 [-1.00] (90.82) |" in t2
    fig5 = list(csv.DictReader((sweep / "tables" / "fig5.csv").open()))
    assert [(int(r["steps"]), float(r["speedup"])) for r in fig5] == [(128, 1.25), (1024, 1.5)]
    assert fig5[1]["paper_speedup"] == "1.48"


def test_nothing_to_collect_is_one_line(tmp_path, capsys):
    assert collect.main([str(tmp_path)]) == 2
    assert capsys.readouterr().out.startswith("error: no result.json under")


def test_the_experiments_callback_builds_the_tables_when_a_sweep_ends(tmp_path):
    from omegaconf import OmegaConf

    from sparsed.launch.callbacks import Tables

    sweep = tmp_path / "table2"
    job(sweep, "dense", "RULER-4k", 90.0)
    job(sweep, "sparsed", "RULER-4k", 91.0)
    Tables(["table2"]).on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}}))
    assert "| + SparseD | 91.00 [+1.00] (90.89) | missing (1695.00) |" in (sweep / "tables" / "table2.md").read_text()

"""The latency benchmark and its report, end to end on tiny random models (CPU): every step kind is
measured, composed into generations, checked against complete ones, and written up."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> None:
    subprocess.run([sys.executable, *args], cwd=ROOT, check=True, capture_output=True, text=True, timeout=600)


def test_bench_latency_composes_every_method_and_the_report_reads_it(tmp_path):
    out = tmp_path / "lat.json"
    run("scripts/bench_latency.py", "--tiny", "--shapes", "llada8b", "--lengths", "256", "--validate-length", "256",
        "--repeats", "1", "--fig5-steps", "64", "128", "--out", str(out))
    d = json.loads(out.read_text())
    res, comp = d["results"]["llada8b"]["256"], d["composed"]["llada8b"]["256"]
    for key in ("sparsed", "streaming_llm", "prefix_dense", "prefix_losa", "prefix_quest", "prefix_sparsed_cache"):
        assert comp[key] > 0, key
    assert comp["fastest_dense"] == min(v for k, v in comp.items() if k.startswith("dense_"))
    # the kernels that must be exact are (all blocks kept; fp32 on the CPU)
    assert all(err < 1e-4 for err in res["checks_rel_error_vs_dense"].values()), res["checks_rel_error_vs_dense"]
    assert 0 < res["sparsed_sparse_density"] < 1  # the sparse steps alone
    assert set(d["validation"]["llada8b"]) >= {"sparsed", "prefix_dense"}
    assert sorted(d["fig5"]["llada8b"], key=int) == ["64", "128"] and d["fig5_length"]["llada8b"] == 256

    run("scripts/plot_latency.py", str(out), "--validation", str(out), "--out", str(tmp_path))
    md = (tmp_path / "h200.md").read_text()
    assert "## Targets" in md and "| 0k |" not in md and "`lat.json`" in md  # provenance column
    assert (tmp_path / "figure4.png").stat().st_size > 0
    # Figure 5 is the paper's 64k sweep: a run that stopped short of 64k does not provide it
    assert "Figure 5 (64k" not in md


def test_kinds_limit_what_is_measured(tmp_path):
    out = tmp_path / "lat.json"
    run("scripts/bench_latency.py", "--tiny", "--shapes", "dream7b", "--lengths", "256", "--validate-length", "0",
        "--repeats", "1", "--kinds", "dense", "--out", str(out))
    r = json.loads(out.read_text())["results"]["dream7b"]["256"]
    assert any(k.startswith("dense_") for k in r) and not any(k.startswith(("sparsed", "prefix", "streaming")) for k in r)

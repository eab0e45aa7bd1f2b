"""lm-eval's own command line finds the ``sparsed`` model once the project is installed (``pip install -e .``).

The editable wheel is built with the project's build backend and unpacked into a site folder of its own
(the shared environment stays untouched); Python processes its .pth files as it would in site-packages.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GSM8K = Path(os.environ.get("SPARSED_GSM8K_DIR", ROOT.parent / "shared" / "data" / "gsm8k"))


@pytest.mark.skipif(not (GSM8K / "test.jsonl").is_file(), reason=f"GSM8K data not found at {GSM8K}")
def test_lm_eval_cli_runs_the_sparsed_model_after_an_editable_install(tmp_path):
    pytest.importorskip("hatchling")
    built = subprocess.run([sys.executable, "-c", f"import hatchling.build as b; print(b.build_editable({str(tmp_path)!r}))"],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    site_dir = tmp_path / "site"
    with zipfile.ZipFile(tmp_path / built.stdout.strip()) as wheel:
        wheel.extractall(site_dir)
    assert (site_dir / "sparsed_lm_eval.pth").is_file()
    out = tmp_path / "out"
    args = ["lm_eval", "--model", "sparsed", "--model_args",
            "model=llada_small_random,task=gsm8k,task.gen_length=8,task.steps=4,task.block_length=8,progress=false",
            "--tasks", "sparsed_gsm8k", "--include_path", str(ROOT / "sparsed" / "eval" / "tasks"), "--limit", "1",
            "--metadata", json.dumps({"data_dir": str(GSM8K)}), "--gen_kwargs", "max_gen_toks=8",
            "--output_path", str(out)]
    # the console script `lm_eval` is lm_eval.__main__:cli_evaluate; the site folder stands in for site-packages
    code = (f"import site, sys; site.addsitedir({str(site_dir)!r}); sys.argv = {args!r}; "
            "from lm_eval.__main__ import cli_evaluate; cli_evaluate()")
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONWARNINGS="ignore")
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(next(out.rglob("results_*.json")).read_text())
    assert results["config"]["model"] == "sparsed"
    assert "exact_match,flexible-extract" in results["results"]["sparsed_gsm8k"]

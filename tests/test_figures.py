"""The CI test of the analysis notebooks: every notebook runs headless at the ci size, writes its PNG and PDF
figures and its statistics, and every statistic is finite (``python -m sparsed.analysis.figures``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from sparsed.analysis.figures import NOTEBOOKS, check_outputs, main

ROOT = Path(__file__).resolve().parents[1]


def test_notebooks_are_jupytext_percent_files():
    found = sorted(p.name for p in (ROOT / "analysis").glob("[0-9][0-9]_*.py"))
    assert found == sorted(NOTEBOOKS)
    for name in found:
        text = (ROOT / "analysis" / name).read_text()
        assert "format_name: percent" in text.split("# ---", 2)[1]
        assert re.search(r"^# %% \[markdown\]$", text, re.M) and len(re.findall(r"^# %%$", text, re.M)) >= 2


def test_every_notebook_runs_at_the_ci_size_and_reports_finite_statistics(tmp_path, capsys):
    code = main(["--size", "ci", "--out", str(tmp_path), "--jobs", "2"])
    log = capsys.readouterr().out
    assert code == 0, log
    for name in NOTEBOOKS.values():
        assert check_outputs(tmp_path, name) == []
        data = json.loads((tmp_path / f"{name}.json").read_text())
        pngs = [f for f in data["figures"] if f.endswith(".png")]
        assert pngs and all((tmp_path / f).stat().st_size > 10_000 for f in pngs)
        assert all((tmp_path / f.replace(".png", ".pdf")).is_file() for f in pngs)
        assert data["stats"] and data["size"] == "ci"


def test_the_output_check_catches_a_missing_figure_and_a_nan(tmp_path):
    (tmp_path / "x.json").write_text(json.dumps({"figures": ["a.png"], "stats": {"v": [1.0, float("nan")]}}))
    problems = check_outputs(tmp_path, "x")
    assert "figure a.png missing" in problems and any("v.1" in p for p in problems)

"""The paper's tables from sweep folders: Markdown on stdout and in <sweep>/tables/, plus CSV.

Used by ``experiments/collect.py`` (the command line) and by the experiments' Hydra callback, which
rebuilds a sweep's tables when it ends (``sparsed.launch.callbacks.Tables``):

    python experiments/collect.py multirun/table1_llada               # every table its results fill
    python experiments/collect.py multirun/table2 --table table2
    python experiments/collect.py multirun/fig4 multirun/fig5 --out figures/

Each result.json is one cell; its row is the job's ``row`` choice (configs/row; else the attention method and
cache), its column the benchmark (MMLU ... RULER-8k, latency-64k). Cells show ours, the paper's number
(experiments/paper_numbers.yaml) and the difference to our dense run; a job that failed says ``failed``,
one that has not run (or not finished) ``missing``. A RULER score marked * averages fewer than 13 tasks.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PAPER = yaml.safe_load((Path(__file__).resolve().parents[1] / "experiments" / "paper_numbers.yaml").read_text())
MODELS = {"llada": "LLaDA-1.5", "dream": "Dream-7B-Instruct"}
BENCHMARKS = ("MMLU", "GSM8K", "HumanEval", "RULER-4k", "RULER-8k")
RULER_ORDER = ("niah_single_1", "niah_single_2", "niah_single_3", "niah_multikey_1", "niah_multikey_2",
               "niah_multikey_3", "niah_multiquery", "niah_multivalue", "vt", "cwe", "fwe", "qa_1", "qa_2")
ROW_LABELS = {"dense": "dense (FlashAttention)", "dkv_greedy": "+ dKV-Cache (Greedy)", "dkv_pd": "+ dKV-Cache (PD)",
              "fast_dllm": "+ Fast-dLLM", "sliding_window": "+ Slide Window", "streaming_llm": "+ StreamingLLM",
              "sparsed": "+ SparseD", "no_skip": "- Skipping Sparse (skip=0)",
              "no_skip_paper": "- Skipping Sparse (skip=0, Algorithm 1)", "no_reuse": "- Sparse Reusing",
              "no_isolated": "- Isolated Selection"}
TABLES = ("table1", "table4", "table2", "fig4", "fig5", "fig6")
# Row identities of the paper's layouts (configs/row/ presets, or a plain run's method name, see row_of):
# every delta is against the dense row; Figure 4 draws three rows; Figures 5 and 6 are about SparseD's row
# (its speed-up, and the sweep of its settings, read from its method's own node).
BASELINE_ROW = "dense"
FIG4_ROWS = ("dense", "streaming_llm", "sparsed")
SPARSED_ROW = "sparsed"
FIG6_SETTINGS = ("skip", "select")


@dataclass
class Cell:
    model: str
    row: str
    column: str
    status: str  # ok | failed
    value: float | None  # average score (0-100) or seconds
    config: dict[str, Any]
    path: Path
    scores: dict[str, float | None] = field(default_factory=dict)
    partial: bool = False
    error: str | None = None


def column_of(cfg: dict[str, Any]) -> str:
    task, length = cfg["task"]["name"], cfg["prompt"].get("length")
    size = f"{length // 1024}k" if length and length % 1024 == 0 else str(length)
    if task == "ruler":
        return f"RULER-{size}"
    if task in ("latency", "generate"):
        return f"{task}-{size}" if length else task
    return {"mmlu": "MMLU", "gsm8k": "GSM8K", "humaneval": "HumanEval"}.get(task, task)


def row_of(result_path: Path, cfg: dict[str, Any]) -> str:
    hydra_file = result_path.parent / ".hydra" / "hydra.yaml"
    if hydra_file.is_file():
        choices = (yaml.safe_load(hydra_file.read_text()) or {}).get("hydra", {}).get("runtime", {}).get("choices", {})
        if choices.get("row"):
            return str(choices["row"])
    cache = cfg["cache"]["name"]
    return cfg["attention"]["name"] + ("" if cache == "none" else f"+{cache}")


def load(dirs: Iterable[str | Path]) -> list[Cell]:
    cells = []
    for d in dirs:
        for path in sorted(Path(d).rglob("result.json")):
            try:
                r = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue  # only result.json files written whole exist; anything else is not a result
            cfg = r.get("config") or {}
            if not cfg:
                continue
            model = cfg["model"]["arch"] if cfg["model"]["arch"] in MODELS else cfg["model"]["name"]
            status = r.get("status", "ok")
            if status == "ok" and "latency" in r and "average" not in r:
                value = r["latency"]["median_total_s"]
            else:
                value = r.get("average")
            cells.append(Cell(model, row_of(path, cfg), column_of(cfg), status, value, cfg, path,
                              scores=r.get("scores") or {}, partial=not r.get("complete", True),
                              error=(r.get("error") or {}).get("message")))
    return cells


def _ok_value(c: Cell | None) -> float | None:
    return c.value if c is not None and c.status == "ok" else None


def _settings(c: Cell) -> dict[str, Any]:
    """The node of the cell's attention method (each method's settings live under its own name)."""
    return c.config.get(c.config["attention"]["name"]) or {}


def _fmt(v: float | None, digits: int = 2) -> str:
    return "" if v is None else f"{v:.{digits}f}"


def _cell_text(cell: Cell | None, paper: float | None, dense: float | None, digits: int = 2) -> str:
    if cell is None:
        ours = "missing"
    elif cell.status != "ok":
        ours = "failed"
    else:
        ours = _fmt(cell.value, digits) + ("*" if cell.partial else "")
    if cell is not None and cell.status == "ok" and cell.value is not None and dense is not None:
        ours += f" [{cell.value - dense:+.{digits}f}]"
    return ours + (f" ({_fmt(paper, digits)})" if paper is not None else "")


class Tables:
    """The cells of some sweeps, indexed for the tables' layouts."""

    def __init__(self, cells: list[Cell]) -> None:
        self.cells = cells
        self.index = {(c.model, c.row, c.column): c for c in cells}
        self.models = sorted({c.model for c in cells}, key=lambda m: (m not in MODELS, m))

    def get(self, model: str, row: str, column: str) -> Cell | None:
        return self.index.get((model, row, column))

    def value(self, model: str, row: str, column: str) -> float | None:
        return _ok_value(self.get(model, row, column))

    def dense(self, model: str, row: str, column: str) -> float | None:
        """The baseline a row's cell is compared with (none for the baseline itself)."""
        return None if row == BASELINE_ROW else self.value(model, BASELINE_ROW, column)

    # -- the tables: each returns (markdown, csv rows) --------------------------------------------------
    def table1(self) -> tuple[str, list[dict[str, Any]]]:
        lines, rows = [], []
        for model in self.models:
            paper = PAPER["table1"].get(model, {})
            present = [r for r in dict.fromkeys([*paper, *(c.row for c in self.cells if c.model == model)])]
            lines += [f"**{MODELS.get(model, model)}** — ours [ours − our dense] (paper)", "",
                      "| Method | " + " | ".join((*BENCHMARKS, "Avg.")) + " |", "|---" * (len(BENCHMARKS) + 2) + "|"]
            dense_values = [self.value(model, BASELINE_ROW, b) for b in BENCHMARKS]
            dense_avg = sum(dense_values) / 5 if all(v is not None for v in dense_values) else None  # type: ignore[misc]
            for row in present:
                values = [self.value(model, row, b) for b in BENCHMARKS]
                avg = sum(values) / len(values) if all(v is not None for v in values) else None  # type: ignore[misc]
                texts = []
                for b in BENCHMARKS:
                    dense = self.dense(model, row, b)
                    texts.append(_cell_text(self.get(model, row, b), paper.get(row, {}).get(b), dense))
                    rows.append(self._csv(model, row, b, paper.get(row, {}).get(b), dense))
                avg_text = _fmt(avg) + (f" [{avg - dense_avg:+.2f}]" if avg is not None and dense_avg is not None
                                        and row != BASELINE_ROW else "") if avg is not None else "-"
                if paper.get(row, {}).get("Avg.") is not None:
                    avg_text += f" ({paper[row]['Avg.']:.2f})"
                lines.append(f"| {ROW_LABELS.get(row, row)} | " + " | ".join(texts) + f" | {avg_text} |")
            lines.append("")
        return "\n".join(lines), rows

    def table4(self) -> tuple[str, list[dict[str, Any]]]:
        lines, rows = [], []
        for model in self.models:
            for column in ("RULER-4k", "RULER-8k"):
                paper = PAPER["table4"].get(model, {}).get(column, {})
                runs = [c for c in self.cells if c.model == model and c.column == column]
                order = list(dict.fromkeys([*paper, *(c.row for c in runs)]))
                if not runs:
                    continue
                lines += [f"**{MODELS.get(model, model)}, {column}** — ours (paper)", "",
                          "| Method | " + " | ".join((*RULER_ORDER, "AVG")) + " |", "|---" * (len(RULER_ORDER) + 2) + "|"]
                for row in order:
                    c = self.get(model, row, column)
                    want = paper.get(row) or [None] * 14
                    ours = [None if c is None or c.status != "ok" else c.scores.get(t) for t in RULER_ORDER]
                    ours.append(None if c is None or c.status != "ok" else c.value)
                    if c is None or c.status != "ok":
                        texts = ["missing" if c is None else "failed"] * 14
                    else:
                        texts = [_fmt(v) if v is not None else "not run" for v in ours]
                    texts = [t + (f" ({w:.2f})" if w is not None else "") for t, w in zip(texts, want, strict=True)]
                    lines.append(f"| {ROW_LABELS.get(row, row)} | " + " | ".join(texts) + " |")
                    for t, v, w in zip((*RULER_ORDER, "AVG"), ours, want, strict=True):
                        rows.append({"model": model, "column": column, "row": row, "task": t, "ours": v, "paper": w,
                                     "status": "missing" if c is None else c.status})
                lines.append("")
        return "\n".join(lines), rows

    def table2(self) -> tuple[str, list[dict[str, Any]]]:
        paper = PAPER["table2"]
        rows_present = list(dict.fromkeys([*paper, "no_skip_paper", *(c.row for c in self.cells if c.model == "llada")]))
        lines = ["**LLaDA-1.5** — ours [ours − our dense] (paper); latency in seconds", "",
                 "| Variant | RULER-4k | latency-64k |", "|---|---|---|"]
        rows = []
        for row in rows_present:
            texts = []
            for col in ("RULER-4k", "latency-64k"):
                dense = self.dense("llada", row, col)
                texts.append(_cell_text(self.get("llada", row, col), paper.get(row, {}).get(col), dense))
                rows.append(self._csv("llada", row, col, paper.get(row, {}).get(col), dense))
            lines.append(f"| {ROW_LABELS.get(row, row)} | " + " | ".join(texts) + " |")
        return "\n".join(lines) + "\n", rows

    def fig4(self) -> tuple[str, list[dict[str, Any]]]:
        lengths = ("4k", "8k", "16k", "32k", "64k")
        lines = ["Seconds per generation (T = 128): ours [ours − our dense] (paper)", "",
                 "| Model | Method | " + " | ".join(lengths) + " |", "|---|---" + "|---" * len(lengths) + "|"]
        rows = []
        for model in self.models:
            for row in FIG4_ROWS:
                paper = PAPER["fig4"].get(model, {}).get(row, {})
                texts = []
                for n in lengths:
                    col = f"latency-{n}"
                    dense = self.dense(model, row, col)
                    texts.append(_cell_text(self.get(model, row, col), paper.get(n), dense, digits=1))
                    rows.append(self._csv(model, row, col, paper.get(n), dense))
                lines.append(f"| {MODELS.get(model, model)} | {ROW_LABELS.get(row, row)} | " + " | ".join(texts) + " |")
        return "\n".join(lines) + "\n", rows

    def fig5(self) -> tuple[str, list[dict[str, Any]]]:
        lines = ["64k-token generation against T: seconds, and SparseD's speed-up over dense (paper's speed-up)", "",
                 "| Model | T | dense s | SparseD s | speed-up |", "|---|---|---|---|---|"]
        rows = []
        for model in self.models:
            by_steps: dict[int, dict[str, Cell]] = {}
            for c in self.cells:
                if c.model == model and c.column == "latency-64k":
                    by_steps.setdefault(int(c.config["gen"]["steps"]), {})[c.row] = c
            for steps in sorted(by_steps):
                d, s = by_steps[steps].get(BASELINE_ROW), by_steps[steps].get(SPARSED_ROW)
                dv, sv = _ok_value(d), _ok_value(s)
                speed = dv / sv if dv and sv else None
                paper = PAPER["fig5"].get(model, {}).get(steps)
                lines.append(f"| {MODELS.get(model, model)} | {steps} | {_cell_text(d, None, None, 1)} | "
                             f"{_cell_text(s, None, None, 1)} | {_fmt(speed)}" + (f" ({paper:.2f})" if paper else "") + " |")
                rows.append({"model": model, "steps": steps, "dense_s": dv, "sparsed_s": sv, "speedup": speed,
                             "paper_speedup": paper})
        return "\n".join(lines) + "\n", rows

    def fig6(self) -> tuple[str, list[dict[str, Any]]]:
        lines = ["SparseD's skip and selection ratios: RULER-4k accuracy (paper) and 64k latency in seconds", "",
                 "| Model | setting | value | RULER-4k | latency-64k |", "|---|---|---|---|---|"]
        rows = []
        for model in self.models:
            points: dict[tuple[str, float], dict[str, Cell]] = {}
            for c in self.cells:
                if c.model != model or c.row != SPARSED_ROW:
                    continue
                for setting in FIG6_SETTINGS:
                    points.setdefault((setting, float(_settings(c)[setting])), {})[c.column] = c
            for (setting, value), cols in sorted(points.items()):
                paper = PAPER["fig6"].get(model, {}).get(setting, {}).get(value)
                acc, lat = cols.get("RULER-4k"), cols.get("latency-64k")
                lines.append(f"| {MODELS.get(model, model)} | {setting} | {value:g} | {_cell_text(acc, paper, None)} | "
                             f"{_cell_text(lat, None, None, 1)} |")
                rows.append({"model": model, "setting": setting, "value": value,
                             "ruler_4k": _ok_value(acc), "paper_ruler_4k": paper, "latency_64k_s": _ok_value(lat)})
        return "\n".join(lines) + "\n", rows

    def _csv(self, model: str, row: str, column: str, paper: float | None, dense: float | None) -> dict[str, Any]:
        c = self.get(model, row, column)
        ours = _ok_value(c)
        return {"model": model, "row": row, "column": column, "ours": ours, "paper": paper,
                "delta_dense": None if ours is None or dense is None else round(ours - dense, 4),
                "status": "missing" if c is None else c.status, "partial": bool(c and c.partial),
                "result": None if c is None else str(c.path)}

    def failures(self) -> list[str]:
        return [f"failed: {c.path.parent}: {c.error}" for c in self.cells if c.status != "ok"]


def applicable(tables: Tables) -> list[str]:
    """The tables whose columns some result fills."""
    columns = {c.column for c in tables.cells}
    out = []
    if columns & set(BENCHMARKS):
        out.append("table1")
    if columns & {"RULER-4k", "RULER-8k"}:
        out.append("table4")
    if any(c.row.startswith("no_") for c in tables.cells):
        out.append("table2")
    if sum(col.startswith("latency-") for col in columns) > 1:
        out.append("fig4")
    if len({c.config["gen"]["steps"] for c in tables.cells if c.column == "latency-64k"}) > 1:
        out.append("fig5")
    if len({tuple(_settings(c)[k] for k in FIG6_SETTINGS) for c in tables.cells if c.row == SPARSED_ROW}) > 1:
        out.append("fig6")
    return out


def write(name: str, markdown: str, rows: list[dict[str, Any]], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.md").write_text(markdown)
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (out / f"{name}.csv").write_text(buf.getvalue())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirs", nargs="+", help="sweep or run folders (searched for result.json)")
    ap.add_argument("--table", choices=TABLES, action="append", help="tables to build (default: those with results)")
    ap.add_argument("--out", help="folder for the .md and .csv files (default: <first folder>/tables)")
    args = ap.parse_args(argv)
    cells = load(args.dirs)
    if not cells:
        print(f"error: no result.json under {', '.join(args.dirs)}")
        return 2
    tables = Tables(cells)
    out = Path(args.out) if args.out else Path(args.dirs[0]) / "tables"
    for name in args.table or applicable(tables):
        markdown, rows = getattr(tables, name)()
        write(name, markdown, rows, out)
        print(f"## {name}\n\n{markdown}")
    for line in tables.failures():
        print(line)
    print(f"tables in {out}")
    return 0

"""The CPU latency table and figure (issue 11): dense vs SparseD (and a cache) on the shipped small model at
several prompt lengths, side by side in one process, through run.py's own latency task.

Each cell is ``python run.py task=latency model=<model> prompt.length=<L> gen.steps=<T> attention=<m>``
with its warm-up generation (excluded, reported apart) and ``--repeats`` timed ones (median), the
attention calls timed apart from the rest of each step and SparseD's pattern build apart from its build
step. Writes ``<out>/cpu.json`` (every cell's latency record), ``cpu.md`` (the table with the ratios) and
``cpu_figure4.png`` (latency against length, the shape of the paper's Figure 4).

    python scripts/latency_cpu.py --lengths 1024 2048 4096 8192 --steps 32 128 --out results/latency
    python scripts/latency_cpu.py --model llada --init random --lengths 1024 2048 --steps 4 --out results/latency \
        --tag llada8b   # the 8B architecture with random weights: a few steps, to see the attention share grow
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ROWS = {
    "dense": ["attention=dense"],
    "sparsed": ["attention=sparsed"],  # the model's preset block size (small: 64); SparseD's 0.2 / 0.3
    "prefix": ["attention=dense", "cache=prefix"],
}


def cell(model: str, init: str, length: int, steps: int, gen: int, row: str, repeats: int, out: Path,
         extra: list[str] = ()) -> dict[str, Any]:
    from hydra import compose, initialize_config_dir

    from sparsed.config import register_schemas
    from sparsed.runner import run

    register_schemas()
    over = [f"model={model}", "task=latency", f"task.repeats={repeats}", f"prompt.length={length}",
            f"gen.steps={steps}", f"gen.gen_length={gen}", f"gen.block_length={gen}", "run.progress=false",
            "run.wandb=false", *ROWS[row], *extra]
    if init == "random":
        over.append("model.init=random")
    if row == "sparsed" and length > 2048:
        over.append("sparsed.block_size=128")  # the card's setting beyond 2k
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=over)
    r = run(cfg, out / "runs" / f"{model}_{length}_{steps}_{row}")
    lat = r["latency"]
    return {"overrides": over, "median_total_s": lat["median_total_s"], "repeats_total_s": lat["repeats_total_s"],
            "warmup_s": lat["warmup_s"], "dense_steps_mean_s": lat["dense_steps_mean_s"],
            "sparse_steps_mean_s": lat["sparse_steps_mean_s"], "cached_steps_mean_s": lat["cached_steps_mean_s"],
            "attention_share": lat.get("attention_share"), "pattern_build_s": lat.get("pattern_build_s"),
            "phases": lat.get("phases"), "per_step_s": lat["per_step_s"],
            "attention_s_per_step": lat.get("attention_s_per_step"), "density": r["attention"]["density_mean"],
            "peak": r["memory"], "prompt_tokens": r["prompt"]["tokens"], "score": r["score"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="small")
    ap.add_argument("--init", default="pretrained", choices=["pretrained", "random"])
    ap.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048, 4096, 8192])
    ap.add_argument("--steps", type=int, nargs="+", default=[32, 128])
    ap.add_argument("--gen", type=int, default=32, help="generated tokens (one block)")
    ap.add_argument("--rows", nargs="+", default=["dense", "sparsed"], choices=sorted(ROWS))
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--tag", default="small")
    ap.add_argument("--set", nargs="*", default=[], metavar="OVERRIDE",
                    help="more run.py overrides for every cell, e.g. model.architecture.n_layers=2 (the 8B "
                         "shapes with fewer layers: every layer is the same, so the attention share is the model's)")
    ap.add_argument("--out", default="results/latency")
    args = ap.parse_args()
    out = Path(args.out)
    path = out / f"cpu_{args.tag}.json"
    data = json.loads(path.read_text()) if path.is_file() else {"cells": {}}
    import torch

    from sparsed.results import device_info, versions, write_json_atomic

    data |= {"command": " ".join(sys.argv), "device": device_info(torch.device("cpu")), "versions": versions(),
             "threads": torch.get_num_threads(), "load_average_at_start": os.getloadavg()}
    for steps in args.steps:
        for length in args.lengths:
            for row in args.rows:
                key = f"{length}/{steps}/{row}"
                if key in data["cells"]:
                    continue
                t0 = time.time()
                data["cells"][key] = cell(args.model, args.init, length, steps, max(args.gen, 1), row, args.repeats, out,
                                         args.set)
                data["cells"][key]["wall_s"] = round(time.time() - t0, 1)
                data["cells"][key]["load_average"] = os.getloadavg()
                print(key, json.dumps({k: data["cells"][key][k] for k in ("median_total_s", "attention_share",
                                                                          "pattern_build_s")}), flush=True)
                write_json_atomic(path, data)
    write_report(data, out, args.tag)


def write_report(data: dict[str, Any], out: Path, tag: str) -> None:
    cells = data["cells"]
    lines = [f"# CPU latency ({tag}): {data['device'].get('name')}, {data['threads']} threads", "",
             f"    {data['command']}", "",
             "| T | length | dense (s) | SparseD (s) | SparseD speed-up | dense step (s) | sparse step (s) | step speed-up | "
             "pattern build (s) | build / dense step | attention share (dense) | prefix cache (s) |",
             "|---" * 12 + "|"]
    keys = sorted({(int(k.split("/")[1]), int(k.split("/")[0])) for k in cells})
    for steps, length in keys:
        d, s, p = (cells.get(f"{length}/{steps}/{r}") for r in ("dense", "sparsed", "prefix"))
        if d is None:
            continue
        ds = d["dense_steps_mean_s"]
        row = [str(steps), str(length), f"{d['median_total_s']:.2f}"]
        if s:
            ss = s["sparse_steps_mean_s"]
            row += [f"{s['median_total_s']:.2f}", f"**{d['median_total_s'] / s['median_total_s']:.2f}x**",
                    f"{ds:.3f}", f"{ss:.3f}" if ss else "-", f"{ds / ss:.2f}x" if ss else "-",
                    f"{s['pattern_build_s']:.3f}" if s.get("pattern_build_s") else "-",
                    f"{s['pattern_build_s'] / ds:.2f}" if s.get("pattern_build_s") else "-"]
        else:
            row += ["-"] * 7
        row += [f"{d['attention_share']:.2f}" if d.get("attention_share") is not None else "-",
                f"{p['median_total_s']:.2f}" if p else "-"]
        lines.append("| " + " | ".join(row) + " |")
    (out / f"cpu_{tag}.md").write_text("\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        for steps in sorted({k[0] for k in keys}):
            for row, style in (("dense", "o-"), ("sparsed", "s--"), ("prefix", "^:")):
                pts = [(L, cells[f"{L}/{steps}/{row}"]["median_total_s"]) for t, L in keys
                       if t == steps and f"{L}/{steps}/{row}" in cells]
                if pts:
                    ax.plot(*zip(*pts, strict=True), style, label=f"{row}, T={steps}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("prompt + generation tokens")
        ax.set_ylabel("end-to-end latency (s)")
        ax.set_title(f"{tag} on {data['threads']} CPU threads")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / f"cpu_{tag}_figure4.png", dpi=110)
        plt.close(fig)
    except ImportError:
        pass
    print("\n".join(lines))


if __name__ == "__main__":
    main()

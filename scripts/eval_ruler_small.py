"""RULER tables of a model for attention methods and KV caches, without lm-eval or Hydra (for machines
that lack them, such as the GPU image).

Uses the project's RULER generator (evaluation seeds, never used in training: training draws seeds
>= 1,000,000), RULER's metrics, the model's own sampler (T = generation length, one block, as Table 3)
and batches with left padding (every row gets what it gets alone, for every method and cache: see
tests/test_kv_cache.py). Samples are sized as RULER's own generator sizes them (``--fill official``,
often well short of the nominal length) unless ``--fill tight`` asks for the fill to within a few
tokens (what the tables before the official fill became the default used). The samples of a length
and task are generated once and shared by every row.

A row is a named (attention method, cache strategy, sampler settings) triple (``ROWS``; ``--rows`` picks
them, ``--table cache|losa|card`` takes a preset list). The JSON is rewritten after every cell, so a
call that runs out of time keeps what it finished; ``--resume`` skips the cells already there and
``--deadline-s`` stops starting new ones. Per cell: the score, the generation time and tokens, NFE and
full/cached forwards, and for cached methods the KV density. ``--markdown`` writes the table.

    python scripts/eval_ruler_small.py --lengths 2048 4096 --limit 50 --batch 25 --out results/x.json
    python scripts/eval_ruler_small.py --table cache --lengths 2048 4096 --limit 50 --out results/cache_small/accuracy.json
    python scripts/eval_ruler_small.py --rows dense prefix --limit 2 --batch 1 --out lat.json   # latency, batch 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sparsed.attention import build_method  # noqa: E402
from sparsed.cache import build_cache  # noqa: E402
from sparsed.data.ruler import FILLS, context_stats, sample_ids  # noqa: E402
from sparsed.data.ruler import generate as ruler_generate  # noqa: E402
from sparsed.eval.ruler_metrics import ruler_average, score  # noqa: E402
from sparsed.models.loading import load_model  # noqa: E402
from sparsed.results import device_info, versions, write_json_atomic  # noqa: E402
from sparsed.sampling.common import left_pad  # noqa: E402
from sparsed.sampling.dispatch import sample  # noqa: E402
from sparsed.tokenizer import load_tokenizer  # noqa: E402

OFFLINE_TASKS = ["niah_single_1", "niah_single_2", "niah_single_3", "niah_multikey_1", "niah_multikey_2",
                 "niah_multikey_3", "niah_multiquery", "niah_multivalue", "vt", "cwe", "fwe"]
GEN = {"niah_single_1": 32, "niah_single_2": 32, "niah_multikey_1": 32, "niah_multikey_2": 32, "vt": 32,
       "niah_single_3": 64, "niah_multikey_3": 64, "niah_multiquery": 64, "niah_multivalue": 64, "fwe": 64, "cwe": 128}
SHORT = {"niah_single_1": "S1", "niah_single_2": "S2", "niah_single_3": "S3", "niah_multikey_1": "MK1",
         "niah_multikey_2": "MK2", "niah_multikey_3": "MK3", "niah_multiquery": "MQ", "niah_multivalue": "MV",
         "vt": "VT", "cwe": "CWE", "fwe": "FWE"}


@dataclass(frozen=True)
class Row:
    attention: str | None = None  # None: the model's plain dense attention
    settings: dict[str, Any] = field(default_factory=dict)
    cache: str | None = None
    cache_settings: dict[str, Any] = field(default_factory=dict)
    gen: dict[str, Any] = field(default_factory=dict)  # sampler keyword arguments (threshold, remasking, ...)
    card_block: bool = False  # SparseD's block size from the small model's card: 64 at <= 2k, else 128
    quarter_window: bool = False  # the card's sliding window: a quarter of the length
    max_batch: int | None = None  # a row whose kernel needs more memory per sequence (masked SDPA) batches less

    def build(self, length: int, facts):  # noqa: ANN001, ANN201 - (method, cache)
        settings = dict(self.settings)
        if self.card_block:
            settings["block_size"] = 64 if length <= 2048 else 128
        if self.quarter_window:
            settings["ws"] = length // 4
        method = None if self.attention is None else build_method(self.attention, settings, facts=facts)
        name = PREFIX_CACHE[0] if self.cache == "prefix" else self.cache
        cache = None if name is None else build_cache(name, self.cache_settings, facts)
        return method, cache


def _rows() -> dict[str, Row]:
    rows = {
        "dense": Row(),
        "sparsed": Row("sparsed", {"skip": 0.2, "select": 0.3}, card_block=True, max_batch=25),
        "sliding_window": Row("sliding_window", quarter_window=True),
        "prefix": Row(cache="prefix"),
        "prefix+thr0.9": Row(cache="prefix", gen={"threshold": 0.9}),
        "dual": Row(cache="dual"),
        "dual+thr0.9": Row(cache="dual", gen={"threshold": 0.9}),
        "dkv_decode": Row(cache="dkv_decode", cache_settings={"refresh_interval": 8}),
        "dkv_greedy": Row(cache="dkv_greedy", cache_settings={"refresh_interval": 2, "window": 4},
                          gen={"remasking": "random_fixed"}),
    }
    for b in (128, 256, 512, 1024):
        rows[f"quest_b{b}"] = Row("quest", {"budget": b}, cache="prefix")
        rows[f"sparsed_cache_b{b}"] = Row("sparsed_cache", {"budget": b, "block_size": 32}, cache="prefix")
        rows[f"losa5_b{b}"] = Row("losa", {"budget": b}, cache="prefix")
        rows[f"losa50_b{b}"] = Row("losa", {"budget": b, "active_fraction": 0.5}, cache="prefix")
        # one page selection per K/V group (the group's mean query) instead of one per query head
        rows[f"losa5g_b{b}"] = Row("losa", {"budget": b, "gqa": "group_mean"}, cache="prefix")
    return rows


ROWS = _rows()
SPARSE_KERNEL: list[str | None] = [None]  # --sparsed-kernel
PREFIX_CACHE: list[str] = ["prefix"]  # --prefix-cache: the rows' prefix cache (block diffusion: block_prefix)
TABLES = {
    "card": ["dense", "sparsed", "sliding_window"],
    "cache": ["dense", "sparsed", "prefix", "prefix+thr0.9", "dual", "dual+thr0.9", "dkv_decode", "dkv_greedy"],
    "losa": ["prefix"] + [f"{m}_b{b}" for b in (128, 256, 512, 1024) for m in ("quest", "sparsed_cache", "losa5",
                                                                                  "losa50")],
}


def batch_ids(tok, samples: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: ANN001
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    return left_pad([sample_ids(tok, s) for s in samples], pad)


def gen_settings(preset: dict[str, Any], gen_len: int, block: int | None, row: Row) -> SimpleNamespace:
    """The sampler settings of one cell: the model preset's ``gen`` with T = gen length (Table 3), one block of
    the whole generation unless ``--block-length`` says otherwise, and the row's overrides."""
    base = {"temperature": 0.0, "remasking": "low_confidence", "cfg_scale": 0.0, "threshold": None, "factor": None,
            "alg": "maskgit_plus", "top_p": None, "top_k": None, "alg_temp": None, "seed": 0} | preset
    return SimpleNamespace(**(base | {"gen_length": gen_len, "steps": gen_len, "block_length": block or gen_len}
                              | row.gen))


def run_cell(model, tok, row: Row, length: int, samples: list[dict], gen_len: int, batch: int,  # noqa: ANN001
             preset: dict[str, Any] | None = None, block: int | None = None) -> dict[str, Any]:
    preds, gen_s, nfe, cached, kv = [], 0.0, 0, 0, []
    batch = min(batch, row.max_batch or batch)
    gen = gen_settings(preset or {}, gen_len, block, row)
    for i in range(0, len(samples), batch):
        chunk = samples[i : i + batch]
        ids, mask = batch_ids(tok, chunk)
        method, cache = row.build(length, model.args.facts)
        if method is not None and hasattr(method, "s") and hasattr(method.s, "kernel") and SPARSE_KERNEL[0]:
            method.s.kernel = SPARSE_KERNEL[0]
        out = sample(model, ids, gen, method, attention_mask=mask if bool((mask == 0).any()) else None, cache=cache)
        preds += [tok.decode(r, skip_special_tokens=True) for r in out.generated]
        gen_s += out.total_time
        nfe += out.nfe
        cached += out.step_summary()["cached"]
        if method is not None and method.report().get("kv_density") is not None:
            kv.append(method.report()["kv_density"])
    refs = [s["outputs"] for s in samples]
    return {"score": score(samples[0]["metric"], preds, refs), "n": len(samples), "generation_s": round(gen_s, 4),
            "generated_tokens": len(samples) * gen_len, "s_per_token_batched": round(gen_s / (len(samples) * gen_len), 6),
            "nfe": nfe, "cached_forwards": cached, "batches": -(-len(samples) // batch),
            "kv_density": round(sum(kv) / len(kv), 6) if kv else None, "example": preds[0].strip()[:80]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="sparsed/assets/small-dlm")
    ap.add_argument("--lengths", type=int, nargs="+", default=[2048, 4096])
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--tasks", nargs="+", default=OFFLINE_TASKS)
    ap.add_argument("--table", choices=sorted(TABLES), help="a preset list of rows")
    ap.add_argument("--rows", "--methods", nargs="*", dest="rows", default=None,
                    help=f"rows to run (default: the card's dense and sparsed); known: {', '.join(ROWS)}; "
                         "none: only generate the samples and record their lengths")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fill", choices=FILLS, default="official", help="sample sizing (sparsed.data.ruler.fill)")
    ap.add_argument("--dtype", default=None, help="model dtype (default: bf16 on CUDA, fp32 on the CPU)")
    ap.add_argument("--preset", default="small", help="configs/model/<preset>.yaml whose gen.* the sampler starts from")
    ap.add_argument("--block-length", type=int, default=None, help="semi-AR block (default: the generation length; "
                    "block diffusion models: their block, e.g. 4)")
    ap.add_argument("--sparsed-kernel", default=None, help="SparseD's sparse kernel (default: the method's; on a GPU "
                    "with varied prompt lengths sdpa_mask avoids a FlexAttention compile per canvas shape)")
    ap.add_argument("--prefix-cache", default="prefix", help="the cache of the rows that use a prefix cache "
                    "(block diffusion models: block_prefix, their exact one)")
    ap.add_argument("--resume", action="store_true", help="keep the cells already in --out")
    ap.add_argument("--deadline-s", type=float, default=None, help="start no new cell after this many seconds")
    ap.add_argument("--markdown", default=None, help="also write the table as markdown here")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    rows = args.rows if args.rows is not None else (TABLES[args.table] if args.table else TABLES["card"])
    SPARSE_KERNEL[0] = args.sparsed_kernel
    PREFIX_CACHE[0] = args.prefix_cache
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        sys.exit(f"error: unknown rows {unknown}; known: {', '.join(ROWS)}")
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = args.dtype or ("bf16" if dev == "cuda" else "fp32")
    model = load_model(args.model, device=dev, dtype=dtype) if rows else None
    tok = load_tokenizer(args.model)
    preset_file = Path(__file__).resolve().parents[1] / "configs" / "model" / f"{args.preset}.yaml"
    preset = dict((yaml.safe_load(preset_file.read_text()) or {}).get("gen", {}))
    for key in ("steps", "gen_length", "block_length"):
        preset.pop(key, None)
    prev = json.loads(Path(args.out).read_text()) if args.resume and Path(args.out).is_file() else {}
    cells: dict = prev.get("cells", {})
    context: dict = prev.get("context", {})
    t_start = time.time()
    stopped = False

    def save() -> None:
        table = {L: {r: {t: c["score"] for t, c in by_t.items()} for r, by_t in by_r.items()} for L, by_r in cells.items()}
        summary = {L: {r: ruler_average(per_task) for r, per_task in by_r.items()} for L, by_r in table.items()}
        write_json_atomic(args.out, {"command": " ".join(sys.argv), "rows": {r: ROWS[r].__dict__ for r in rows},
                                     "scores": table, "summary": summary, "cells": cells, "context": context,
                                     "fill": args.fill, "limit": args.limit, "batch": args.batch, "seed": args.seed,
                                     "dtype": dtype, "elapsed_s": round(time.time() - t_start, 1),
                                     "stopped_by_deadline": stopped,
                                     "device": device_info(model.device) if model is not None else None,
                                     "versions": versions()})

    for length in args.lengths:
        for task in args.tasks:
            todo = [r for r in rows if task not in cells.get(str(length), {}).get(r, {})]
            if rows and not todo:
                continue
            if args.deadline_s is not None and time.time() - t_start > args.deadline_s:
                stopped = True
                break
            gen = GEN[task]
            samples = ruler_generate(task, length, tok, n=args.limit, seed=args.seed, gen_length=gen, use_cache=False,
                                     fill=args.fill)
            context.setdefault(str(length), {})[task] = stats = context_stats(samples)
            print(f"L={length} {task:16s} prompt tokens mean {stats['mean']} min {stats['min']} "
                  f"(budget {stats['budget']}, fill {args.fill})", flush=True)
            for name in todo:
                if args.deadline_s is not None and time.time() - t_start > args.deadline_s:
                    stopped = True
                    break
                cell = run_cell(model, tok, ROWS[name], length, samples, gen, args.batch, preset, args.block_length)
                cells.setdefault(str(length), {}).setdefault(name, {})[task] = cell
                print(f"L={length} {task:16s} {name:18s} {cell['score']:6.1f}  {cell['generation_s']:7.2f}s "
                      f"nfe {cell['nfe']} kv {cell['kv_density']}  e.g. {cell['example'][:50]!r}", flush=True)
                save()
        if stopped:
            break
    save()
    for L, by_r in cells.items():
        for r, by_t in by_r.items():
            avg = ruler_average({t: c["score"] for t, c in by_t.items()})
            print(f"L={L} {r:18s} average {avg['average']:.2f} over {len(avg['tasks_run'])} tasks")
    if args.markdown:
        Path(args.markdown).write_text(markdown(json.loads(Path(args.out).read_text())))


def markdown(data: dict[str, Any]) -> str:
    """Per length: one row per method/cache, per-task scores, average, KV density, NFE and time per token."""
    lines = []
    for L, by_r in data["cells"].items():
        lines += [f"### {L} tokens ({data['limit']} samples per task, batch {data['batch']}, {data['dtype']}, "
                  f"fill {data['fill']})", "",
                  "| row | " + " | ".join(SHORT[t] for t in OFFLINE_TASKS)
                  + " | avg | KV density | NFE / batch | s / token (batched) |",
                  "|---" * (len(OFFLINE_TASKS) + 5) + "|"]
        for r, by_t in by_r.items():
            scores = [by_t.get(t, {}).get("score") for t in OFFLINE_TASKS]
            done = [s for s in scores if s is not None]
            avg = sum(done) / len(done) if done else None
            kv = [c["kv_density"] for c in by_t.values() if c.get("kv_density") is not None]
            nfe = sum(c["nfe"] for c in by_t.values()) / max(1, sum(c["batches"] for c in by_t.values()))
            spt = sum(c["generation_s"] for c in by_t.values()) / max(1, sum(c["generated_tokens"] for c in by_t.values()))
            lines.append(f"| {r} | " + " | ".join("-" if s is None else f"{s:.1f}" for s in scores)
                         + f" | **{'-' if avg is None else f'{avg:.1f}'}**"
                         + f"{'' if len(done) == len(OFFLINE_TASKS) else f' ({len(done)} tasks)'}"
                         + f" | {'-' if not kv else f'{100 * sum(kv) / len(kv):.2f} %'} | {nfe:.1f} | {spt:.5f} |")
        lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

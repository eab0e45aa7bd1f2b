"""RULER table of a model for several attention methods, without lm-eval (for machines that lack it).

Uses the project's RULER generator (evaluation seeds, never used in training: training draws seeds
>= 1,000,000), RULER's metrics, the model's own sampler (T = generation length, one block, as Table 3)
and batches with left padding. Samples are sized as RULER's own generator sizes them (``--fill
official``, often well short of the nominal length) unless ``--fill tight`` asks for the fill to
within a few tokens (what the tables before the official fill became the default used). Writes one JSON with every per-task
score and, per length and task, the prompt lengths the fill produced (``context``: mean, min, max).

    python scripts/eval_ruler_small.py --model sparsed/assets/small-dlm --lengths 2048 4096 --limit 20 --out results/x.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sparsed.attention import build_method  # noqa: E402
from sparsed.data.ruler import FILLS, context_stats, sample_ids  # noqa: E402
from sparsed.data.ruler import generate as ruler_generate  # noqa: E402
from sparsed.eval.ruler_metrics import ruler_average, score  # noqa: E402
from sparsed.models.loading import load_model  # noqa: E402
from sparsed.results import device_info, versions, write_json_atomic  # noqa: E402
from sparsed.sampling.common import left_pad  # noqa: E402
from sparsed.sampling.llada import generate  # noqa: E402
from sparsed.tokenizer import load_tokenizer  # noqa: E402

OFFLINE_TASKS = ["niah_single_1", "niah_single_2", "niah_single_3", "niah_multikey_1", "niah_multikey_2",
                 "niah_multikey_3", "niah_multiquery", "niah_multivalue", "vt", "cwe", "fwe"]
GEN = {"niah_single_1": 32, "niah_single_2": 32, "niah_multikey_1": 32, "niah_multikey_2": 32, "vt": 32,
       "niah_single_3": 64, "niah_multikey_3": 64, "niah_multiquery": 64, "niah_multivalue": 64, "fwe": 64, "cwe": 128}


def methods_for(length: int, facts) -> dict:  # noqa: ANN001 - ModelFacts
    """The model card's settings; methods are built with the model's facts, so quirks resolve as in run.py."""
    bs = 64 if length <= 2048 else 128
    return {
        "dense": lambda: None,
        "sparsed": lambda: build_method("sparsed", {"skip": 0.2, "select": 0.3, "block_size": bs}, facts=facts),
        "sliding_window": lambda: build_method("sliding_window", {"ws": length // 4}, facts=facts),
    }


def batch_ids(tok, samples: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    return left_pad([sample_ids(tok, s) for s in samples], pad)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="sparsed/assets/small-dlm")
    ap.add_argument("--lengths", type=int, nargs="+", default=[2048, 4096])
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--tasks", nargs="+", default=OFFLINE_TASKS)
    ap.add_argument("--methods", nargs="*", default=["dense", "sparsed", "sliding_window"],
                    help="none (--methods with no name): only generate the samples and record their lengths")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fill", choices=FILLS, default="official", help="sample sizing (sparsed.data.ruler.fill)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_model(args.model, device=dev, dtype="bf16" if dev == "cuda" else "fp32") if args.methods else None
    tok = load_tokenizer(args.model)
    table: dict = {}
    context: dict = {}
    t_start = time.time()
    for length in args.lengths:
        makers = methods_for(length, model.args.facts) if model is not None else {}
        for task in args.tasks:
            gen = GEN[task]
            samples = ruler_generate(task, length, tok, n=args.limit, seed=args.seed, gen_length=gen, use_cache=False,
                                     fill=args.fill)
            context.setdefault(str(length), {})[task] = stats = context_stats(samples)
            print(f"L={length} {task:16s} prompt tokens mean {stats['mean']} min {stats['min']} "
                  f"(budget {stats['budget']}, fill {args.fill})", flush=True)
            refs = [s["outputs"] for s in samples]
            for name in args.methods:
                preds = []
                for i in range(0, len(samples), args.batch):
                    chunk = samples[i : i + args.batch]
                    ids, mask = batch_ids(tok, chunk)
                    out = generate(model, ids, steps=gen, gen_length=gen, block_length=gen, attention_mask=mask,
                                   attention=makers[name]())
                    preds += [tok.decode(row, skip_special_tokens=True) for row in out.generated]
                value = score(samples[0]["metric"], preds, refs)
                table.setdefault(str(length), {}).setdefault(name, {})[task] = value
                print(f"L={length} {task:16s} {name:15s} {value:6.1f}  e.g. {preds[0].strip()[:60]!r} gold {refs[0]}",
                      flush=True)
    summary = {L: {m: ruler_average(per_task) for m, per_task in by_m.items()} for L, by_m in table.items()}
    for L, by_m in summary.items():
        for m, avg in by_m.items():
            print(f"L={L} {m:15s} average {avg['average']:.2f} over {len(avg['tasks_run'])} tasks")
    write_json_atomic(args.out, {"command": " ".join(sys.argv), "scores": table, "summary": summary,
                                 "context": context, "fill": args.fill, "limit": args.limit, "seed": args.seed,
                                 "elapsed_s": time.time() - t_start,
                                 "device": device_info(model.device) if model is not None else None,
                                 "versions": versions()})


if __name__ == "__main__":
    main()

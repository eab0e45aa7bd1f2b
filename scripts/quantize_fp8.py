"""Store a checkpoint folder in block-wise FP8 (the fine-grained FP8 layout of Qwen3-*-FP8 / DeepSeek-V3).

    python scripts/quantize_fp8.py outputs/sdar_small/model sparsed/assets/small-sdar
    python scripts/quantize_fp8.py SRC DST --keep embed_tokens --keep lm_head   # those stay bf16
    python scripts/quantize_fp8.py SRC DST --block 64                            # 64x64 blocks

Every 2-D weight (embedding and LM head included, unless ``--keep`` names them) becomes float8_e4m3fn
plus a float32 ``<name>_scale_inv`` per block; 1-D tensors (norms) keep their dtype. ``config.json`` is
copied with ``quantization_config`` added (nothing else changes), and so is every other small file of
the folder (tokenizer files, README.md, loss.png, log.jsonl, ...). ``load_model`` reads the result like
any checkpoint (it dequantizes as it reads; see ``sparsed/models/fp8.py``).

It prints the weight file sizes, the dequantization error per kind of tensor (layer numbers folded
together) and an end check: both folders loaded with ``load_model`` on CPU in fp32, the max absolute
logit difference and the top-1 agreement on a few random token sequences.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from sparsed.models.fp8 import (  # noqa: E402
    DEFAULT_BLOCK,
    SCALE_SUFFIX,
    dequantize_blockwise,
    quantization_config,
    quantize_state_dict,
)
from sparsed.models.loading import load_model, safetensors_files  # noqa: E402

WEIGHT_FILES = re.compile(r".*\.safetensors(\.index\.json)?$")
MAX_COPY_BYTES = 16 * 2**20  # other files larger than this are not copied (a stray optimizer state, say)
_LAYER_NUMBER = re.compile(r"\.\d+\.")


def kind_of(name: str) -> str:
    """``model.layers.3.mlp.up_proj.weight`` -> ``model.layers.*.mlp.up_proj.weight``."""
    return _LAYER_NUMBER.sub(".*.", name)


def read_state(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    state: dict[str, torch.Tensor] = {}
    for f in safetensors_files(folder):
        state |= load_file(str(f))
    return state


def quantize_checkpoint(src: Path, dst: Path, keep: Iterable[str] = (), block: tuple[int, int] = DEFAULT_BLOCK,
                        ) -> dict[str, dict[str, float]]:
    """Write ``dst``: ``src`` with its weights in block-wise FP8 (one model.safetensors) and its other files copied.

    Returns, per tensor kind, the worst ``max|err| / max|w|`` and ``||err|| / ||w||`` over its tensors
    (err = dequantized - source, in float64).
    """
    from safetensors.torch import save_file

    src, dst = Path(src), Path(dst)
    keep = tuple(keep)
    cfg = json.loads((src / "config.json").read_text())
    if "quantization_config" in cfg:
        raise SystemExit(f"{src}/config.json already has a quantization_config; quantize the full-precision checkpoint")
    state = read_state(src)
    quantized = quantize_state_dict(state, block, keep)
    errors: dict[str, dict[str, float]] = {}
    for name, w in state.items():
        if name + SCALE_SUFFIX not in quantized:
            continue
        ref = w.double()
        err = dequantize_blockwise(quantized[name], quantized[name + SCALE_SUFFIX], torch.float64, block) - ref
        row = errors.setdefault(kind_of(name), {"tensors": 0, "max_rel": 0.0, "rms_rel": 0.0})
        row["tensors"] += 1
        row["max_rel"] = max(row["max_rel"], float(err.abs().max() / ref.abs().max().clamp_min(1e-300)))
        row["rms_rel"] = max(row["rms_rel"], float(err.norm() / ref.norm().clamp_min(1e-300)))
    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.iterdir()):
        if f.is_file() and not WEIGHT_FILES.fullmatch(f.name) and f.name != "config.json":
            if f.stat().st_size > MAX_COPY_BYTES:
                print(f"not copied (over {MAX_COPY_BYTES >> 20} MB): {f.name}")
                continue
            shutil.copy2(f, dst / f.name)
    tmp = dst / "model.safetensors.tmp"
    save_file(quantized, str(tmp), metadata={"format": "pt"})
    tmp.replace(dst / "model.safetensors")
    cfg["quantization_config"] = quantization_config(block, keep)
    (dst / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    return errors


@torch.no_grad()
def compare_logits(src: Path, dst: Path, n_seqs: int = 4, length: int = 64, seed: int = 0) -> dict[str, float]:
    """Both checkpoints through ``load_model`` (CPU, fp32) on random token sequences: logit difference, top-1 agreement.

    Block-causal models (SDAR) run under their block-causal mask (block 4, the released block size).
    """
    a = load_model(str(src), device="cpu", dtype="fp32")
    b = load_model(str(dst), device="cpu", dtype="fp32")
    ids = torch.randint(0, a.args.vocab_size, (n_seqs, length), generator=torch.Generator().manual_seed(seed))
    block = 4 if a.args.block_causal else None
    la = a.head(a.hidden_states(ids, block=block))
    lb = b.head(b.hidden_states(ids, block=block))
    diff = (la - lb).abs()
    return {"max_abs": float(diff.max()), "rms_abs": float(diff.pow(2).mean().sqrt()), "logit_std": float(la.std()),
            "logit_absmax": float(la.abs().max()),
            "rms_rel": float((la - lb).norm() / la.norm()),
            "top1_agree": float((la.argmax(-1) == lb.argmax(-1)).float().mean()), "positions": n_seqs * length}


def _mb(paths: Iterable[Path]) -> float:
    return sum(p.stat().st_size for p in paths) / 1e6


def report(src: Path, dst: Path, errors: dict[str, dict[str, Any]], check: dict[str, float] | None) -> None:
    ws, wd = _mb(safetensors_files(src)), _mb(safetensors_files(dst))
    print(f"weights: {src} {ws:.2f} MB -> {dst} {wd:.2f} MB ({wd / ws:.2f}x)")
    print(f"folders: {_mb(p for p in src.iterdir() if p.is_file()):.2f} MB -> "
          f"{_mb(p for p in dst.iterdir() if p.is_file()):.2f} MB")
    width = max((len(k) for k in errors), default=10)
    print(f"{'tensor kind':<{width}}  n   max|err|/max|w|  ||err||/||w||")
    for kind, row in errors.items():
        print(f"{kind:<{width}} {row['tensors']:>2}   {row['max_rel']:.4f}           {row['rms_rel']:.4f}")
    if check:
        print(f"end check ({check['positions']} positions, fp32): max |logit diff| {check['max_abs']:.4g} "
              f"(rms {check['rms_abs']:.4g}; logit std {check['logit_std']:.4g}, max {check['logit_absmax']:.4g}; "
              f"||diff||/||logits|| {check['rms_rel']:.4f}), top-1 agreement {check['top1_agree']:.4f}")


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("src", type=Path, help="checkpoint folder (config.json + safetensors)")
    p.add_argument("dst", type=Path, help="output folder")
    p.add_argument("--keep", action="append", default=[], metavar="NAME_SUBSTRING",
                   help="keep the tensors whose checkpoint name contains this in their dtype (repeatable)")
    p.add_argument("--block", type=int, default=DEFAULT_BLOCK[0], help="square block size (default 128)")
    p.add_argument("--no-check", action="store_true", help="skip the end check (loading both models)")
    args = p.parse_args(argv)
    if args.src.resolve() == args.dst.resolve():
        p.error("dst must differ from src")
    errors = quantize_checkpoint(args.src, args.dst, args.keep, (args.block, args.block))
    report(args.src, args.dst, errors, None if args.no_check else compare_logits(args.src, args.dst))


if __name__ == "__main__":
    main()

"""Checkpoints of a training run: the resumable state and the inference export (the family's layout).

Both are written next to their final name and renamed into place, so a run killed mid-write (SIGKILL,
time limit, preemption) always leaves the previous complete checkpoint behind.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sparsed.models.loading import save_checkpoint
from sparsed.models.transformer import DiffusionLM

STATE_FILE = "train_state.pt"
EXPORT_DIR = "model"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "vocab.json", "merges.txt")


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(),
                             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(out: Path, state: dict[str, Any]) -> Path:
    """Atomically write ``state`` (model/optimizer/scheduler state dicts, step, ...) to out/train_state.pt."""
    out.mkdir(parents=True, exist_ok=True)
    final = out / STATE_FILE
    tmp = out / (STATE_FILE + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, final)
    return final


def load_state(out: Path, device: torch.device | str = "cpu") -> dict[str, Any] | None:
    path = out / STATE_FILE
    if not path.is_file():
        return None
    # weights_only=False: the state holds Python RNG tuples and numpy arrays (our own file, not a download)
    return torch.load(path, map_location=device, weights_only=False)


def export_inference(
    model: DiffusionLM, out: Path, tokenizer_dir: Path, extra_config: dict[str, Any] | None = None,
    dtype: torch.dtype = torch.bfloat16,
) -> Path:
    """Write out/model: config.json + model.safetensors in the model family's layout (LLaDA or SDAR, ``dtype``) + tokenizer files.

    Built in out/model.tmp and swapped in, so ``load_model(out/model)`` always finds a whole checkpoint.
    """
    final = out / EXPORT_DIR
    tmp = out / (EXPORT_DIR + ".tmp")
    old = out / (EXPORT_DIR + ".old")
    for p in (tmp, old):
        if p.exists():
            shutil.rmtree(p)
    # A fresh module rather than a deepcopy: the training model may carry a compiled forward.
    export = DiffusionLM(model.args)
    export.load_state_dict({k: v.detach().cpu() for k, v in model.state_dict().items()})
    export = export.to(dtype=dtype)
    cfg = {"torch_dtype": str(dtype).removeprefix("torch.")} | (extra_config or {})
    save_checkpoint(export, tmp, cfg)
    for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).is_file():
            shutil.copy2(tokenizer_dir / name, tmp / name)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        shutil.rmtree(old)
    return final

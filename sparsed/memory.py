"""A run's memory, estimated before the model loads, against what the device has free.

``model=llada model.init=random prompt=16k`` on a 24 GB CPU machine needs 32 GB for the fp32 weights
alone; without this check it dies in the allocator after minutes. The estimate is a floor (weights, the
logits of the canvas, one layer's activations); a run it passes may still need more.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from sparsed.config_errors import ConfigError

GIB = 2**30


def parameter_count(cfg: DictConfig) -> tuple[int, object]:
    """(parameters, ModelArgs) of the configured model, counted on the meta device (no memory used)."""
    from sparsed.models.loading import ARCHITECTURES, args_for, resolve_checkpoint
    from sparsed.models.transformer import DiffusionLM

    m = cfg.model
    if m.init == "pretrained":
        args = args_for(resolve_checkpoint(m.path), m.arch)
    else:
        arch = dict(OmegaConf.to_container(m.architecture, resolve=True))  # type: ignore[arg-type]
        args = ARCHITECTURES[m.arch].args_from_config(arch)
    with torch.device("meta"):
        model = DiffusionLM(args)
    return sum(p.numel() for p in model.parameters()), args


def available_bytes(device: torch.device) -> int | None:
    """Free memory of ``device``: CUDA's free memory, or MemAvailable (capped by a cgroup limit) on a CPU."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        free = int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None
    cgroup = Path("/sys/fs/cgroup/memory.max")
    try:
        limit = cgroup.read_text().strip()
        if limit.isdigit():
            used = int((cgroup.parent / "memory.current").read_text())
            free = min(free, int(limit) - used)
    except OSError:
        pass
    return free


def check_memory(cfg: DictConfig, canvas: int, batch: int = 1) -> None:
    """ConfigError in one line when the estimate exceeds the device's free memory."""
    from sparsed.models.loading import resolve_device, resolve_dtype

    device = resolve_device(cfg.model.device)
    dtype = resolve_dtype(cfg.model.dtype, device)
    available = available_bytes(device)
    if available is None:
        return
    params, args = parameter_count(cfg)
    size = torch.empty((), dtype=dtype).element_size()
    weights = params * size
    d, hidden, vocab = args.dim, args.ffn_dim, args.vocab_size  # type: ignore[attr-defined]
    # fp32 logits of every canvas row, and one layer's hidden states, q/k/v and MLP activations
    activations = batch * canvas * (4 * vocab + size * (6 * d + 3 * hidden))
    need = weights + activations
    if need <= available:
        return
    raise ConfigError(
        f"model={cfg.model.name} ({params / 1e9:.2f}B parameters in {str(dtype).removeprefix('torch.')}) needs about "
        f"{math.ceil(need / GIB)} GiB on {device.type} ({weights / GIB:.1f} GiB of weights, {activations / GIB:.1f} GiB "
        f"for a {canvas}-token canvas), but only {available / GIB:.1f} GiB is free; use model.dtype=bf16, a GPU "
        "(model.device=cuda), a shorter prompt or a smaller model"
    )

"""Data-parallel evaluation of one task with torch.distributed (``torchrun --nproc-per-node N run.py task=...``).

Every rank loads the model on its own device (``cuda:LOCAL_RANK``; CPU processes talk over gloo) and
answers a share of the requests: lm-eval shards its tasks itself (``SparsedLM.rank/world_size``) and
gathers the samples and metrics to rank 0; RULER's requests are dealt out here, one in every N, and their
answers gathered back in order. Rank 0 alone scores and writes; the result equals a single-process run's
(same samples, same answers, same scores) wherever answers do not depend on the batch they were in
(greedy decoding; or batch size 1 with seeded sampling).
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist
from omegaconf import DictConfig, open_dict

from sparsed.config_errors import ConfigError


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def init_from_env(cfg: DictConfig) -> tuple[int, int]:
    """(rank, world size); starts the process group when torchrun (WORLD_SIZE > 1) launched this process."""
    n = int(os.environ.get("WORLD_SIZE", "1"))
    if n <= 1:
        return 0, 1
    from sparsed.config import EVAL_TASKS

    if cfg.task.name not in EVAL_TASKS:
        raise ConfigError(f"task={cfg.task.name} is one generation; data-parallel runs (WORLD_SIZE={n}) are for "
                          f"evaluation tasks: {', '.join(EVAL_TASKS)}")
    if not dist.is_initialized():
        cuda = torch.cuda.is_available() and cfg.model.device != "cpu"
        dist.init_process_group("nccl" if cuda else "gloo")
        if cuda:
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            with open_dict(cfg):
                cfg.model.device = f"cuda:{local}"
    return dist.get_rank(), dist.get_world_size()


def broadcast(obj: Any) -> Any:  # noqa: ANN401
    """Rank 0's ``obj`` on every rank."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj: Any) -> list[Any] | None:  # noqa: ANN401
    """Every rank's ``obj`` on rank 0 (in rank order), None elsewhere."""
    if world_size() == 1:
        return [obj]
    out: list[Any] | None = [None] * world_size() if rank() == 0 else None
    dist.gather_object(obj, out, dst=0)
    return out


def all_gather_tensor(t: torch.Tensor) -> torch.Tensor:
    if world_size() == 1:
        return t
    parts = [torch.zeros_like(t) for _ in range(world_size())]
    dist.all_gather(parts, t)
    return torch.stack(parts) if t.dim() == 0 else torch.cat(parts)


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()

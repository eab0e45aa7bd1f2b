"""What both samplers share: the result record, step timing, and the attention-method hooks."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from sparsed.attention.base import AttentionMethod, GenerationInfo


@dataclass
class GenerationOutput:
    sequences: torch.Tensor  # [B, prompt + gen], prompt included (left padding kept)
    prompt_length: int
    nfe: int = 0  # model evaluations (a CFG step counts its two passes as two)
    step_times: list[float] = field(default_factory=list)  # seconds per denoising step

    @property
    def generated(self) -> torch.Tensor:
        return self.sequences[:, self.prompt_length :]

    @property
    def total_time(self) -> float:
        return float(sum(self.step_times))


def make_canvas(
    prompt: torch.Tensor, attention_mask: torch.Tensor | None, gen_length: int, mask_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The canvas (prompt + ``gen_length`` mask tokens) and its key mask (generated positions are real)."""
    x = torch.nn.functional.pad(prompt.to(device), (0, gen_length), value=mask_id)
    full_mask = None
    if attention_mask is not None:
        full_mask = torch.nn.functional.pad(attention_mask.to(device).long(), (0, gen_length), value=1)
    return x, full_mask


def left_pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of token lists, left-padded to the longest: (ids [B, W], attention mask [B, W], 1 = real)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, s in enumerate(seqs):
        ids[r, width - len(s) :] = torch.tensor(s, dtype=torch.long)
        mask[r, width - len(s) :] = 1
    return ids, mask


def pad_counts_of(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """Left padding per row from a [B, P] 0/1 mask; None when nothing is padded."""
    if attention_mask is None:
        return None
    pads = (attention_mask == 0).sum(-1)
    return pads if bool((pads > 0).any()) else None


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepClock:
    """Wall time per step, synchronised with the device so that the numbers are real."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.times: list[float] = []

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        synchronize(self.device)
        t0 = time.perf_counter()
        yield
        synchronize(self.device)
        self.times.append(time.perf_counter() - t0)


@contextlib.contextmanager
def method_session(method: AttentionMethod | None, info: GenerationInfo) -> Iterator[None]:
    """Start a method's per-generation state and always close it, even on errors."""
    if method is not None:
        method.start(info)
    try:
        yield
    finally:
        if method is not None:
            method.finish()


def progress(iterable: range, enabled: bool, desc: str):  # noqa: ANN201 - tqdm or the plain range
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, leave=False, dynamic_ncols=True)

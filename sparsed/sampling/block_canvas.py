"""The canvas of block diffusion: blocks counted from each sequence's first token, rows in lockstep.

SDAR's sampler cuts ``prompt + gen_length`` into blocks from position 0 and pads the end to a whole
block (``ceil((P + G) / b) * b`` tokens, so up to ``b - 1`` more than ``gen_length`` are generated);
the prompt's whole blocks are prefilled and decoding starts at the block holding the prompt's tail.

For a batch, every row must keep its own block boundaries and start decoding at the same canvas
block. So a row is left-padded by whole blocks (``(c - P_r // b) * b`` tokens, ``c`` the most whole
prompt blocks of any row): its prompt's tail then lies in canvas block ``c`` for every row. A row that
needs one block fewer than the others (its prompt fills its last block) is filled at the end with a
non-mask token, so that its last canvas block has nothing to decode. Padding is masked as a key;
the filler is only ever seen by itself (block-causal). A padding position as a query (the prefill, or
every step without a cache) sees only padding: a fully masked row, which SDPA answers with zeros since
torch 2.5 (``_safe_softmax``; tested on the CPU), so nothing non-finite reaches the cache.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class BlockCanvas:
    x: torch.Tensor  # [B, W] the canvas (W = n_blocks * block)
    key_valid: torch.Tensor | None  # [B, W] 1 = real token (None: no row is padded)
    pads: torch.Tensor  # [B] left padding of each row in the canvas (whole blocks)
    prompt_lengths: torch.Tensor  # [B] real prompt tokens
    ends: torch.Tensor  # [B] canvas column where each row's own canvas ends
    block: int
    first_block: int  # canvas block where decoding starts (= whole prompt blocks of the longest prompt)
    n_blocks: int

    @property
    def width(self) -> int:
        return self.x.shape[1]

    @property
    def gen_starts(self) -> torch.Tensor:
        return self.pads + self.prompt_lengths


def build_canvas(prompt: torch.Tensor, attention_mask: torch.Tensor | None, gen_length: int, block: int,
                 mask_id: int, fill_id: int) -> BlockCanvas:
    """Lay out ``prompt`` [B, P] (left-padded where ``attention_mask`` has zeros) as described above."""
    B, P = prompt.shape
    device = prompt.device
    real = torch.ones_like(prompt, dtype=torch.bool) if attention_mask is None else attention_mask.to(device).bool()
    lengths = real.sum(-1)
    whole = lengths // block
    own_blocks = (lengths + gen_length + block - 1) // block  # each row's canvas alone, in blocks
    first = int(whole.max())
    n_blocks = first + int((own_blocks - whole).max())
    pads = (first - whole) * block
    x = torch.full((B, n_blocks * block), mask_id, dtype=prompt.dtype, device=device)
    ends = pads + own_blocks * block
    for r in range(B):
        p0, n = int(pads[r]), int(lengths[r])
        x[r, :p0] = fill_id
        x[r, p0 : p0 + n] = prompt[r][real[r]]
        x[r, int(ends[r]) :] = fill_id
    key_valid = None
    if bool((pads > 0).any()):
        cols = torch.arange(x.shape[1], device=device)[None]
        key_valid = (cols >= pads[:, None]).long()
    return BlockCanvas(x, key_valid, pads, lengths, ends, block, first, n_blocks)


def unpack_sequences(canvas: BlockCanvas, x: torch.Tensor, prompt: torch.Tensor, fill_id: int) -> torch.Tensor:
    """The project's output layout: each row's prompt as given (ending at column P), then its generated
    tokens (up to the end of its own canvas), then ``fill_id`` up to the longest row."""
    B, P = prompt.shape
    gen = canvas.ends - canvas.gen_starts
    out = torch.full((B, P + int(gen.max())), fill_id, dtype=x.dtype, device=x.device)
    out[:, :P] = prompt.to(x.device)
    for r in range(B):
        s, e = int(canvas.gen_starts[r]), int(canvas.ends[r])
        out[r, P : P + e - s] = x[r, s:e]
    return out

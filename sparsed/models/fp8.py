"""Block-wise FP8 checkpoints: the "fine-grained FP8" layout of Qwen3-*-FP8 and DeepSeek-V3.

Why: the repository ships its small models as files (under 30 MB of tracked files in all), and a
second ~7M-parameter model does not fit next to the first in bf16; in FP8 it takes half the bytes.
FP8 is only the *storage* format here: ``load_model`` dequantizes right after reading the safetensors,
so every family, attention method and dtype runs on ordinary bf16/fp32 weights.

The layout (the one Hugging Face's Qwen3-FP8 and DeepSeek-V3 checkpoints use, so their tooling reads
it): a 2-D weight ``W`` [out, in] is stored as ``W`` in ``float8_e4m3fn`` plus ``<name>_scale_inv``
(float32, [ceil(out/128), ceil(in/128)]) with ``W_real ~= W_fp8.float() * scale_inv`` broadcast over
128x128 blocks (edge blocks are cut short); ``config.json`` carries
``"quantization_config": {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
"weight_block_size": [128, 128]}``. One scale per block (amax / 448, e4m3's largest finite value) keeps
the relative error of every element at e4m3's rounding (at most 2**-4 of its value, or at most 2**-10
of the block's amax / 448 for the smallest values, which fall in e4m3's subnormals).

Unlike the Qwen3-FP8 releases (whose embedding and lm_head stay bf16), :func:`quantize_state_dict`
quantizes every 2-D floating tensor, embedding and LM head included (they are most of a small model's
bytes); names holding a ``keep`` substring stay in their dtype, and 1-D tensors (norms, biases) always do.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch

from sparsed.config_errors import ConfigError

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = float(torch.finfo(FP8_DTYPE).max)  # 448.0
SCALE_SUFFIX = "_scale_inv"
DEFAULT_BLOCK = (128, 128)
QUANT_METHODS = ("fp8",)
FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)


def _block(block: Iterable[int]) -> tuple[int, int]:
    b = tuple(int(x) for x in block)
    if len(b) != 2 or min(b) <= 0:
        raise ValueError(f"a block size is two positive integers [rows, cols], got {list(block)}")
    return b  # type: ignore[return-value]


def scale_shape(shape: tuple[int, ...] | torch.Size, block: tuple[int, int] = DEFAULT_BLOCK) -> tuple[int, int]:
    """The shape of the ``_scale_inv`` of a weight of ``shape``: one entry per (possibly cut) block."""
    return math.ceil(shape[0] / block[0]), math.ceil(shape[1] / block[1])


def quantize_blockwise(w: torch.Tensor, block: tuple[int, int] = DEFAULT_BLOCK) -> tuple[torch.Tensor, torch.Tensor]:
    """``w`` [out, in] -> (``float8_e4m3fn`` [out, in], float32 ``scale_inv`` [ceil(out/b0), ceil(in/b1)]).

    Each block is scaled so that its largest magnitude lands on 448 (the whole e4m3 range is used);
    an all-zero block gets scale 1 (its fp8 values are zeros either way, and nothing divides by 0).
    Computed in float32: bf16 inputs are exact there, and fp32 holds the division without extra error.
    """
    b0, b1 = _block(block)
    if w.dim() != 2:
        raise ValueError(f"block-wise FP8 quantizes 2-D weights, got shape {tuple(w.shape)}")
    if not w.is_floating_point() or w.dtype in FP8_DTYPES:
        raise ValueError(f"cannot quantize a tensor of dtype {w.dtype}")
    x = w.detach().float()
    if not bool(torch.isfinite(x).all()):
        raise ValueError("cannot quantize a weight holding inf or nan (e4m3fn has no infinity)")
    out, inp = x.shape
    r, c = scale_shape(x.shape, (b0, b1))
    padded = torch.zeros(r * b0, c * b1, dtype=torch.float32, device=x.device)
    padded[:out, :inp] = x  # zero padding never raises a block's amax
    tiles = padded.view(r, b0, c, b1)
    amax = tiles.abs().amax(dim=(1, 3))
    scale_inv = torch.where(amax > 0, amax / FP8_MAX, torch.ones_like(amax))
    q = (tiles / scale_inv[:, None, :, None]).clamp(-FP8_MAX, FP8_MAX)  # clamp: amax/(amax/448) may round past 448
    q = q.view(r * b0, c * b1)[:out, :inp].to(FP8_DTYPE)
    return q.contiguous(), scale_inv.contiguous()


def dequantize_blockwise(w_fp8: torch.Tensor, scale_inv: torch.Tensor, dtype: torch.dtype = torch.float32,
                         block: tuple[int, int] = DEFAULT_BLOCK) -> torch.Tensor:
    """``w_fp8.float() * scale_inv`` broadcast over ``block``-sized tiles (edge tiles cut), cast to ``dtype``.

    The product is taken in float32 (4 significant bits times 24 fit within fp32's rounding) and rounded
    once to ``dtype``.
    """
    b0, b1 = _block(block)
    if w_fp8.dim() != 2:
        raise ValueError(f"block-wise FP8 weights are 2-D, got shape {tuple(w_fp8.shape)}")
    want = scale_shape(w_fp8.shape, (b0, b1))
    if tuple(scale_inv.shape) != want:
        raise ValueError(f"a weight of shape {list(w_fp8.shape)} with weight_block_size [{b0}, {b1}] needs a "
                         f"scale_inv of shape {list(want)}, got {list(scale_inv.shape)}")
    out, inp = w_fp8.shape
    r, c = want
    x = w_fp8.float()
    if (r * b0, c * b1) != (out, inp):  # edge blocks: pad to whole blocks, so one broadcast covers every tile
        x = torch.nn.functional.pad(x, (0, c * b1 - inp, 0, r * b0 - out))
    x = (x.view(r, b0, c, b1) * scale_inv.float()[:, None, :, None]).view(r * b0, c * b1)
    return x[:out, :inp].to(dtype).contiguous()


def quantization_config(block: tuple[int, int] = DEFAULT_BLOCK, keep: Iterable[str] = ()) -> dict[str, Any]:
    """The ``config.json`` entry of a checkpoint written by :func:`quantize_state_dict`.

    ``modules_to_not_convert`` (the name transformers' fine-grained FP8 config uses) records ``keep``;
    loading does not need it (a tensor is dequantized when its ``_scale_inv`` is there).
    """
    cfg: dict[str, Any] = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                           "weight_block_size": list(_block(block))}
    if keep := list(keep):
        cfg["modules_to_not_convert"] = keep
    return cfg


def block_size_of(cfg: Mapping[str, Any]) -> tuple[int, int] | None:
    """The weight block size a ``config.json`` declares; None when it has no ``quantization_config``.

    An unknown ``quant_method`` (or a malformed block size) is one ConfigError line naming the setting.
    """
    q = cfg.get("quantization_config")
    if q is None:
        return None
    if not isinstance(q, Mapping):
        raise ConfigError(f"config.json quantization_config={q!r} is not allowed; it is a mapping with "
                          f"quant_method (one of: {', '.join(QUANT_METHODS)})")
    method = q.get("quant_method")
    if method not in QUANT_METHODS:
        raise ConfigError(f"config.json quantization_config.quant_method={method!r} is not allowed; "
                          f"choose one of: {', '.join(QUANT_METHODS)} (block-wise FP8, weights only)")
    fmt = q.get("fmt", "e4m3")
    if fmt not in ("e4m3", "e5m2"):
        raise ConfigError(f"config.json quantization_config.fmt={fmt!r} is not allowed; choose one of: e4m3, e5m2")
    raw = q.get("weight_block_size", list(DEFAULT_BLOCK))
    try:
        return _block(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"config.json quantization_config.weight_block_size={raw!r} is not allowed; "
                          "it is two positive integers, e.g. [128, 128]") from None


def iter_dequantized(state: Mapping[str, torch.Tensor], block: tuple[int, int] = DEFAULT_BLOCK,
                     dtype: torch.dtype = torch.float32) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) of a raw checkpoint state, each FP8 weight dequantized, the ``_scale_inv`` entries dropped.

    One tensor at a time, so that a lazy mapping (open safetensors files) is never held whole in memory.
    Tensors without a scale pass through untouched (their dtype too); an FP8 tensor without its scale,
    or a scale without its weight, is a ConfigError (a checkpoint cut short or renamed).
    """
    for name in state:
        if name.endswith(SCALE_SUFFIX):
            if name[: -len(SCALE_SUFFIX)] not in state:
                raise ConfigError(f"checkpoint tensor {name} scales no weight ({name[:-len(SCALE_SUFFIX)]} is missing)")
            continue
        t = state[name]
        scale = name + SCALE_SUFFIX
        if scale in state:
            try:
                t = dequantize_blockwise(t, state[scale], dtype, block)
            except ValueError as exc:
                raise ConfigError(f"checkpoint tensor {name}: {exc} (config.json quantization_config."
                                  "weight_block_size)") from None
        elif t.dtype in FP8_DTYPES:
            raise ConfigError(f"checkpoint tensor {name} is {t.dtype} but has no {scale} to dequantize it with")
        yield name, t


def dequantize_state_dict(state: Mapping[str, torch.Tensor], block: tuple[int, int] = DEFAULT_BLOCK,
                          dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """A raw checkpoint state dict (checkpoint names) with every FP8 weight dequantized to ``dtype``.

    The ``_scale_inv`` entries are dropped; other tensors are returned as they are. The inverse of
    :func:`quantize_state_dict` up to FP8 rounding.
    """
    return dict(iter_dequantized(state, block, dtype))


def quantizes(name: str, t: torch.Tensor, keep: Iterable[str] = ()) -> bool:
    """Whether :func:`quantize_state_dict` stores ``name`` in FP8: a 2-D floating tensor no ``keep`` names."""
    return t.dim() == 2 and t.is_floating_point() and t.dtype not in FP8_DTYPES and not any(k in name for k in keep)


def quantize_state_dict(state: Mapping[str, torch.Tensor], block: tuple[int, int] = DEFAULT_BLOCK,
                        keep: Iterable[str] = ()) -> dict[str, torch.Tensor]:
    """A checkpoint state dict (checkpoint names) in block-wise FP8, for export.

    Every 2-D floating tensor (embedding and LM head included) becomes ``name`` (e4m3) + ``name_scale_inv``;
    names containing a ``keep`` substring, and 1-D tensors (norms, biases), keep their dtype.
    """
    keep = tuple(keep)
    out: dict[str, torch.Tensor] = {}
    for name, t in state.items():
        if name.endswith(SCALE_SUFFIX) or t.dtype in FP8_DTYPES:
            raise ValueError(f"{name} is already quantized; quantize the full-precision checkpoint")
        if quantizes(name, t, keep):
            out[name], out[name + SCALE_SUFFIX] = quantize_blockwise(t, block)
        else:
            out[name] = t.contiguous()
    return out

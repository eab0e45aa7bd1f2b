"""Dense attention kernels: SDPA (its backends), FlashAttention-3 and FlashAttention-4.

Every entry takes q [B, Hq, Lq, D] and k, v [B, Hkv, Lk, D] and returns [B, Hq, Lq, D]. Lq may differ
from Lk (a KV cache: a few query rows against the whole canvas), Hq may be a multiple of Hkv (GQA: the
kernels read the shared K/V heads, nothing is repeated in memory) and rows may carry left padding
(``key_valid`` [B, Lk], or a full boolean mask [B, 1, Lq, Lk]).

FA3/FA4 take no mask: a batch with left padding runs through their variable-length entry points
(each row's real keys packed one after the other, ``cu_seqlens``), so padding never silently falls
back to a slower kernel. A mask that is not a key-padding mask (a block-causal rule over a full
canvas) is not expressible there and runs on SDPA; ``dense_attention`` reports which kernel ran
through ``last_kernel`` so that results can say so.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

SDPA_BACKENDS: dict[str, list[SDPBackend]] = {
    "cudnn": [SDPBackend.CUDNN_ATTENTION],
    "flash": [SDPBackend.FLASH_ATTENTION],
    "efficient": [SDPBackend.EFFICIENT_ATTENTION],
    "math": [SDPBackend.MATH],
}
DENSE_BACKENDS = ("auto", *SDPA_BACKENDS, "fa3", "fa4")
FLASH_BACKENDS = ("fa3", "fa4")

# which kernel the latest call used ("sdpa", "sdpa:<backend>", "fa3", "fa3-varlen", ...): for result files
last_kernel: dict[str, str] = {"dense": "sdpa"}


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """K/V heads repeated for each query head of their group (only for references and masks that need it)."""
    if n_rep == 1:
        return x
    b, h, s, d = x.shape
    return x[:, :, None].expand(b, h, n_rep, s, d).reshape(b, h * n_rep, s, d)


@functools.cache
def fa3_module():  # noqa: ANN201 - optional dependency: (dense, varlen) or None
    """The forward-only FA3 wheel (``fa3_fwd_interface``) or the official ``flash_attn_interface``."""
    for name in ("fa3_fwd_interface", "flash_attn_interface"):
        try:
            mod = __import__(name)
            return mod.flash_attn_func, getattr(mod, "flash_attn_varlen_func", None)
        except Exception:  # noqa: BLE001 - any import failure means "not available here"
            continue
    return None


def fa3_func() -> Callable | None:
    mod = fa3_module()
    return None if mod is None else mod[0]


@functools.cache
def fa4_module():  # noqa: ANN201 - optional dependency
    try:
        import flash_attn.cute as fac  # type: ignore[import-not-found]
        from flash_attn.cute.block_sparsity import (  # type: ignore[import-not-found]
            BlockSparseTensorsTorch,
        )

        return fac.flash_attn_func, BlockSparseTensorsTorch, getattr(fac, "flash_attn_varlen_func", None)
    except Exception:  # noqa: BLE001
        return None


def flash_functions(backend: str) -> tuple[Callable | None, Callable | None]:
    """(dense, varlen) entry points of FA3 or FA4 on this machine (None where not importable)."""
    if backend == "fa3":
        mod = fa3_module()
        return (None, None) if mod is None else mod
    mod = fa4_module()
    return (None, None) if mod is None else (mod[0], mod[2])


def available_dense_backends() -> list[str]:
    """The dense backends this machine can run (CUDA-only ones are listed only with a GPU)."""
    names = ["auto", "math"]
    if torch.cuda.is_available():
        names += ["cudnn", "flash", "efficient"]
        names += [b for b in FLASH_BACKENDS if flash_functions(b)[0] is not None]
    else:
        names.append("flash")  # PyTorch's CPU flash kernel (the memory-efficient and cuDNN ones are CUDA-only)
    return names


def _first(out: torch.Tensor | tuple) -> torch.Tensor:
    return out[0] if isinstance(out, tuple) else out


def _is_key_padding(mask: torch.Tensor) -> bool:
    return mask.dim() == 2


def pack_varlen(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_valid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int, int, torch.Tensor]:
    """Rows of a left-padded batch packed for a varlen kernel (layout [total, H, D]).

    Keys of row b are its real keys; its queries are all its Lq query rows when Lq != Lk (a cached call:
    every query is a real token) and its real rows when Lq == Lk (a full canvas, whose padding rows
    produce no output). Returns (q, k, v, cu_q, cu_k, max_q, max_k, q_keep) with ``q_keep`` [B, Lq] the
    query rows that were packed.
    """
    B, _, Lq, _ = q.shape
    Lk = k.shape[2]
    kv_len = key_valid.sum(-1)
    q_keep = key_valid if Lq == Lk else torch.ones(B, Lq, dtype=torch.bool, device=q.device)
    q_len = q_keep.sum(-1)

    def cu(lengths: torch.Tensor) -> torch.Tensor:
        return F.pad(lengths.cumsum(0, dtype=torch.int32), (1, 0))

    qt = q.transpose(1, 2)[q_keep]  # [total_q, Hq, D]
    kt = k.transpose(1, 2)[key_valid]
    vt = v.transpose(1, 2)[key_valid]
    return qt, kt, vt, cu(q_len), cu(kv_len), int(q_len.max()), int(kv_len.max()), q_keep


def unpack_varlen(out: torch.Tensor, q_keep: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Inverse of the query packing: [total_q, Hq, D] -> [B, Hq, Lq, D] (rows not packed are zero)."""
    full = torch.zeros(like.shape[0], like.shape[2], like.shape[1], like.shape[3], dtype=out.dtype, device=out.device)
    full[q_keep] = out
    return full.transpose(1, 2)


def flash_attention(
    backend: str,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_valid: torch.Tensor | None,
    scale: float | None,
    functions: tuple[Callable | None, Callable | None] | None = None,
) -> torch.Tensor:
    """FA3/FA4 (native GQA, any Lq/Lk); left padding goes through the varlen entry point."""
    dense_fn, varlen_fn = functions or flash_functions(backend)
    if dense_fn is None:
        raise RuntimeError(f"dense backend {backend} is not importable on this machine")
    if key_valid is None or bool(key_valid.all()):
        last_kernel["dense"] = backend
        out = _first(dense_fn(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), softmax_scale=scale))
        return out.transpose(1, 2)
    if varlen_fn is None:
        raise RuntimeError(f"dense backend {backend} has no varlen entry point here, so it cannot serve a padded batch")
    qt, kt, vt, cu_q, cu_k, max_q, max_k, q_keep = pack_varlen(q, k, v, key_valid)
    last_kernel["dense"] = f"{backend}-varlen"
    out = _first(varlen_fn(qt, kt, vt, cu_seqlens_q=cu_q, cu_seqlens_k=cu_k, max_seqlen_q=max_q,
                           max_seqlen_k=max_k, softmax_scale=scale))
    return unpack_varlen(out, q_keep, q)


def dense_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_valid: torch.Tensor | None = None,
    backend: str = "auto",
    scale: float | None = None,
) -> torch.Tensor:
    """Bidirectional attention over all keys that the mask lets through.

    ``key_valid`` is a bool key-padding mask [B, Lk] or a full mask [B, 1, Lq, Lk] (True = may attend).
    """
    gqa = q.shape[1] != k.shape[1]
    if backend in FLASH_BACKENDS:
        if not q.is_cuda:
            raise RuntimeError(f"dense backend {backend} runs on CUDA tensors only")
        if key_valid is None or _is_key_padding(key_valid):
            return flash_attention(backend, q, k, v, key_valid, scale)
        # a mask that is not key padding (block-causal over a full canvas) cannot be given to FA3/FA4
    mask = key_valid
    if mask is not None and _is_key_padding(mask):
        mask = mask[:, None, None, :]
    if backend in ("auto", *FLASH_BACKENDS) or (not q.is_cuda and backend == "cudnn"):
        last_kernel["dense"] = "sdpa"
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=gqa)
    last_kernel["dense"] = f"sdpa:{backend}"
    with sdpa_kernel(SDPA_BACKENDS[backend]):
        if gqa and backend not in GQA_NATIVE:
            return grouped_query_sdpa(q, k, v, mask, scale)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=gqa)


# SDPA backends that take enable_gqa; the others get the query heads of a group folded into the rows
GQA_NATIVE = ("flash", "math")


def grouped_query_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
                       scale: float | None) -> torch.Tensor:
    """GQA without repeating K/V: the n_rep query heads of a K/V head become n_rep blocks of query rows."""
    B, Hq, Lq, D = q.shape
    Hkv = k.shape[1]
    n_rep = Hq // Hkv
    qg = q.reshape(B, Hkv, n_rep * Lq, D)
    if mask is not None and mask.shape[-2] != 1:  # a per-query mask repeats for each head of the group
        mask = mask.expand(B, 1, Lq, mask.shape[-1]).repeat(1, 1, n_rep, 1)
    out = F.scaled_dot_product_attention(qg, k, v, attn_mask=mask, scale=scale)
    return out.reshape(B, Hq, Lq, D)


def check_backend_runtime(setting: str, backend: str, device: torch.device) -> None:
    """A ConfigError (before any model loads) when ``backend`` cannot run on ``device`` here."""
    from sparsed.config_errors import ConfigError

    if backend in ("cudnn", "efficient") and device.type != "cuda":
        raise ConfigError(f"{setting}={backend} is a CUDA kernel (the model runs on {device.type}); "
                          f"choose one of: {', '.join(available_dense_backends())}")
    if backend not in FLASH_BACKENDS:
        return
    if device.type != "cuda":
        raise ConfigError(f"{setting}={backend} needs a CUDA device (the model runs on {device.type}); "
                          f"choose one of: {', '.join(available_dense_backends())}")
    if flash_functions(backend)[0] is None:
        what = "FlashAttention-3 (fa3_fwd_interface / flash_attn_interface)" if backend == "fa3" else \
            "FlashAttention-4 (flash_attn.cute)"
        raise ConfigError(f"{setting}={backend} needs {what}, which is not importable here; "
                          f"choose one of: {', '.join(available_dense_backends())}")

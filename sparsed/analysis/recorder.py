"""An attention recorder that any run can switch on: a wrapper around the run's attention method.

``AttentionRecorder(method, settings)`` is a ``DelegatingMethod``: every call is handed to the wrapped
method unchanged (same outputs, same schedule, same name, counters and report), and for the configured
layers, heads and steps it also keeps what dense attention would do there, softmax(q k^T / sqrt(d)) of the
layer's own q/k:

* block-pooled probabilities (``pooling.pooled_attention``) [B, H, nq, nk] per (step, layer): the mean
  over a query block's rows of the mass they put on each key block, computed one query block at a time,
  so the memory stays bounded at 64k (``record.max_gib`` refuses a record that would not fit);
* for the chosen ``[layer, head]`` pairs, the full [B, Lq, Lk] map, only when the canvas is short.

It goes through the attention interface only, so it works for every method, cache and model family. A
cached or block-causal call records the rows it computed (their canvas rows come from the ``Layout``),
under the call's mask. Of several calls at one (step, layer) (guidance passes, a cache's store forward)
the first is kept. When ``record.attention=false`` the runner does not build a recorder at all.

With ``task=latency`` the runner's ``TimedAttention`` sits inside the recorder, so the attention time it
reports is the method's own; the recorder's work lands in the rest of the step (the run warns about it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from sparsed.analysis.pooling import pooled_attention, select_heads
from sparsed.analysis.record_settings import RecordSettings
from sparsed.attention.base import AttentionMethod, GenerationInfo, Layout
from sparsed.attention.delegate import DelegatingMethod
from sparsed.config_errors import ConfigError

FORMAT_VERSION = 1


class AttentionRecorder(DelegatingMethod):
    def __init__(self, inner: AttentionMethod, settings: RecordSettings) -> None:
        settings.validate()
        super().__init__(inner)
        self.settings = settings
        self.pooled: dict[tuple[int, int], torch.Tensor] = {}
        self.full: dict[tuple[int, int, int], torch.Tensor] = {}
        self.q_rows: dict[tuple[int, int], torch.Tensor] = {}
        self.calls: dict[tuple[int, int], int] = {}
        self.generation: GenerationInfo | None = None  # the last generation served (kept after finish)
        self._steps: set[int] = set()
        self._full_steps: set[int] = set()
        self._full_skipped: str | None = None

    # -- schedule hooks: the wrapped method's (DelegatingMethod), plus a fresh record per generation -------
    def start(self, info: GenerationInfo) -> None:
        self.generation = info
        self.pooled, self.full, self.q_rows, self.calls = {}, {}, {}, {}
        self._steps = set(self.settings.resolved_steps(info.total_steps))
        self._full_steps = set(self.settings.resolved_full_steps(info.total_steps))
        # refused before the wrapped method starts: a record that cannot be kept stops the run up front
        self._check_model()
        self._check_size(info)
        canvas = info.canvas_length
        s = self.settings
        self._full_skipped = (None if not s.full_maps or canvas <= s.full_max_tokens else
                              f"canvas of {canvas} tokens > record.full_max_tokens={s.full_max_tokens}")
        super().start(info)

    # -- the call ------------------------------------------------------------------------------------
    def forward(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                key_valid: torch.Tensor | None = None, layout: Layout | None = None) -> torch.Tensor:
        if self._wanted(layer):
            with torch.no_grad():
                self.observe(layer, q, k, key_valid, layout)
        return super().forward(layer, q, k, v, key_valid, layout)

    def _wanted(self, layer: int) -> bool:
        if self.info is None or self.step is None or self.step not in self._steps:
            return False
        layers = self.settings.layers
        if layers is not None and layer not in layers:
            return False
        key = (self.step, layer)
        self.calls[key] = self.calls.get(key, 0) + 1
        return self.calls[key] == 1

    def observe(self, layer: int, q: torch.Tensor, k: torch.Tensor, key_valid: torch.Tensor | None,
                layout: Layout | None) -> None:
        """Record one call's block-pooled (and, where asked, full) dense attention probabilities."""
        assert self.info is not None and self.step is not None
        s = self.settings
        dtype = torch.float16 if s.dtype == "float16" else torch.float32
        if layout is None:
            mask, q_pos, rows = key_valid, None, None
        else:
            mask, q_pos, rows = layout.key_mask(key_valid), layout.q_pos, self.info.canvas_length
        qs, ks = select_heads(q, k, s.heads)
        pooled = pooled_attention(qs, ks, s.block_size, mask=mask, q_pos=q_pos, n_query_rows=rows)
        self.pooled[(self.step, layer)] = pooled.to(dtype).cpu()
        if q_pos is not None:
            self.q_rows[(self.step, layer)] = q_pos.cpu()
        if self._full_skipped is None and self.step in self._full_steps:
            for li, head in s.full_maps:
                if li == layer:
                    self.full[(self.step, layer, head)] = full_map(q, k, head, mask).to(dtype).cpu()

    # -- the file --------------------------------------------------------------------------------------
    def tensors(self) -> dict[str, torch.Tensor]:
        out = {f"pooled.s{st}.l{la}": t.contiguous() for (st, la), t in self.pooled.items()}
        out |= {f"full.s{st}.l{la}.h{h}": t.contiguous() for (st, la, h), t in self.full.items()}
        out |= {f"qrows.s{st}.l{la}": t.contiguous() for (st, la), t in self.q_rows.items()}
        return out

    def metadata(self) -> dict[str, Any]:
        info = self.generation
        if info is None:
            raise RuntimeError("nothing recorded: the recorder has not served a generation")
        s = self.settings
        n_heads = self.facts.n_heads
        return {
            "format": FORMAT_VERSION, "method": self.inner.report().get("method", self.inner.name),
            "block_size": s.block_size, "dtype": s.dtype,
            "heads": s.heads if s.heads is not None else (list(range(n_heads)) if n_heads else None),
            "layers": sorted({la for _, la in self.pooled}), "steps": sorted({st for st, _ in self.pooled}),
            "full_maps": [list(p) for p in s.full_maps], "full_maps_skipped": self._full_skipped,
            "full_steps": sorted({st for st, _, _ in self.full}),
            "calls_per_step_layer": max(self.calls.values(), default=0),
            "prompt_length": info.prompt_length, "canvas_length": info.canvas_length, "gen_length": info.gen_length,
            "total_steps": info.total_steps, "batch": info.batch_size,
            "pad_counts": None if info.pad_counts is None else info.pad_counts.tolist(),
            "definition": "dense softmax(q k^T / sqrt(d)) of the layer's q/k; pooled = mean over a query block's "
                          "rows of the probability mass on each key block (rows sum to 1)",
        }

    def save(self, path: str | Path) -> Path:
        """Write the record (safetensors; the metadata as JSON under the key ``sparsed_record``).

        Written to a temporary name and renamed, so a run killed while writing never leaves a truncated record
        under ``path``. A record already there is replaced: the runner's job logic moves an earlier launch's
        record aside together with its result.json (``launch.job.set_aside``) before a job runs again.
        """
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        save_file(self.tensors(), str(tmp), metadata={"sparsed_record": json.dumps(self.metadata())})
        tmp.replace(path)
        return path

    def summary(self, path: Path) -> dict[str, Any]:
        meta = self.metadata()
        return {"path": str(path), "bytes": path.stat().st_size, "steps": meta["steps"], "layers": meta["layers"],
                "heads": meta["heads"], "block_size": meta["block_size"], "full_maps": len(self.full),
                "full_maps_skipped": meta["full_maps_skipped"]}

    # -- checks ----------------------------------------------------------------------------------------
    def _check_model(self) -> None:
        f, s = self.facts, self.settings
        for name, values, limit in (("layers", s.layers, f.n_layers), ("heads", s.heads, f.n_heads)):
            if values is not None and limit is not None and max(values) >= limit:
                raise ConfigError(f"record.{name}={values}: the model has {limit} {name}")
        for li, head in s.full_maps:
            if (f.n_layers is not None and li >= f.n_layers) or (f.n_heads is not None and head >= f.n_heads):
                raise ConfigError(f"record.full_maps entry [{li}, {head}] is outside the model "
                                  f"({f.n_layers} layers, {f.n_heads} heads)")

    def _check_size(self, info: GenerationInfo) -> None:
        f = self.facts
        if f.n_layers is None or f.n_heads is None:
            return
        need = self.settings.expected_bytes(batch=info.batch_size, canvas=info.canvas_length,
                                            total_steps=info.total_steps, n_layers=f.n_layers, n_heads=f.n_heads)
        if need > self.settings.max_gib * 2**30:
            raise ConfigError(
                f"the attention record would take {need / 2**30:.2f} GiB > record.max_gib={self.settings.max_gib} "
                f"({info.canvas_length} tokens, block {self.settings.block_size}); raise record.block_size or record "
                "fewer record.layers / record.heads / record.steps")


def full_map(q: torch.Tensor, k: torch.Tensor, head: int, mask: torch.Tensor | None) -> torch.Tensor:
    """Dense softmax(q k^T / sqrt(d)) of one query head: float32 [B, Lq, Lk] (short canvases only)."""
    n_rep = q.shape[1] // k.shape[1]
    qh, kh = q[:, head].float(), k[:, head // n_rep].float()
    s = torch.matmul(qh, kh.transpose(-1, -2)) / q.shape[-1] ** 0.5
    if mask is not None:
        m = mask[:, None, :] if mask.dim() == 2 else mask[:, 0]
        s = s.masked_fill(~m, float("-inf"))
    return torch.softmax(s, dim=-1).nan_to_num(0.0)

"""Fast-dLLM and dKV-Cache against the goldens of their original code (../shared/goldens, see its README).

Every `.gen` setting of the five golden files is rerun through this project's samplers and cache
strategies on the same tiny checkpoint and prompt: the tokens must be equal, the number of model
forwards too, and the rows each forward computed (the fed positions of dKV-Cache, the input slice of
Fast-dLLM) must be the original's.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from sparsed.cache import build_cache
from sparsed.cache.base import CacheStrategy
from sparsed.models.loading import load_model
from sparsed.sampling.common import rows_mask
from sparsed.sampling.dream import block_generate, diffusion_generate
from sparsed.sampling.llada import generate
from tests.conftest import FIXTURES

GOLDENS = Path(os.environ.get("SPARSED_GOLDENS", Path(__file__).resolve().parents[1].parent / "shared" / "goldens"))
FILES = ["fastdllm-llada-tiny", "fastdllm-dream-tiny", "dkv-decode-llada-tiny", "dkv-greedy-llada-tiny", "dkv-dream-tiny"]


def _settings(name: str) -> list[str]:
    path = GOLDENS / f"{name}.safetensors"
    if not path.is_file():
        return []
    with safe_open(str(path), "pt") as f:
        return sorted(k for k in f.metadata() if k.endswith(".gen"))


CASES = [(f, s) for f in FILES for s in _settings(f)]


@pytest.fixture(scope="module")
def golden_file():
    cache: dict[str, tuple[dict, dict]] = {}

    def load(name: str) -> tuple[dict, dict]:
        if name not in cache:
            with safe_open(str(GOLDENS / f"{name}.safetensors"), "pt") as f:
                tensors = {k: f.get_tensor(k) for k in f.keys()}
                meta = {k: json.loads(v) for k, v in f.metadata().items() if k.endswith(".gen")}
            cache[name] = (tensors, meta)
        return cache[name]

    return load


@pytest.fixture(scope="module")
def tiny_models():
    out = {}
    for arch in ("llada", "dream"):
        path = FIXTURES / f"{arch}-tiny"
        if not (path / "model.safetensors").is_file():
            pytest.skip(f"fixture checkpoint not found at {path}")
        out[arch] = load_model(str(path), device="cpu", dtype="fp32")
    return out


class Recording:
    """Wraps a strategy's plan to record the rows of every forward (test only)."""

    def __init__(self, strategy: CacheStrategy | None) -> None:
        self.fed: list[torch.Tensor] = []
        self.strategy = strategy

    def attach(self, canvas: int) -> CacheStrategy | None:
        if self.strategy is None:
            return None
        plan = self.strategy.plan

        def recorded(state):  # noqa: ANN001, ANN202
            p = plan(state)
            self.fed.append(rows_mask(p.rows, state.x.shape[0], canvas, state.x.device)[0])
            return p

        self.strategy.plan = recorded  # type: ignore[method-assign]
        return self.strategy


def run_case(models: dict, name: str, meta: dict, prompt: torch.Tensor):
    kw = dict(meta["kwargs"])
    fn = meta["function"]
    canvas = prompt.shape[1] + kw.get("gen_length", kw.get("max_new_tokens", 0))
    if name == "fastdllm-llada-tiny":
        cache = {"generate": None, "generate_with_prefix_cache": "prefix", "generate_with_dual_cache": "dual"}[
            fn.split(":")[1]]
        rec = Recording(None if cache is None else build_cache(cache, facts=models["llada"].args.facts))
        out = generate(models["llada"], prompt, steps=kw["steps"], gen_length=kw["gen_length"],
                       block_length=kw["block_length"], temperature=kw["temperature"], remasking=kw["remasking"],
                       mask_id=kw["mask_id"], threshold=kw["threshold"], cache=rec.attach(canvas))
        return out, rec
    if name == "fastdllm-dream-tiny":
        model = models["dream"]
        common = dict(max_new_tokens=kw["max_new_tokens"], steps=kw["steps"], temperature=kw["temperature"],
                      top_p=kw["top_p"], alg=kw["alg"], alg_temp=kw.get("alg_temp"), threshold=kw.get("threshold"))
        if "generation_utils_block" in fn:
            cache = "dual" if kw["dual_cache"] else "prefix"
            rec = Recording(build_cache(cache, facts=model.args.facts))
            if common["threshold"] is None:
                common["threshold"] = 0.9  # the block code's default, unused by its entropy path
            out = block_generate(model, prompt, block_length=kw["block_length"], cache=rec.attach(canvas), **common)
            return out, rec
        return diffusion_generate(model, prompt, **common), Recording(None)
    if name in ("dkv-decode-llada-tiny", "dkv-greedy-llada-tiny"):
        model = models["llada"]
        greedy = name.startswith("dkv-greedy")
        cache = None
        if kw.get("enable_cache"):
            if greedy:
                cache = build_cache("dkv_greedy", {"refresh_interval": kw["cache_reloading_step"],
                                                   "window": kw["window_size"]}, model.args.facts)
            else:
                cache = build_cache("dkv_decode", {"refresh_interval": kw["cache_reloading_step"]}, model.args.facts)
        rec = Recording(cache)
        g = torch.Generator().manual_seed(1234) if greedy else None  # the harness seeds right before the call
        out = generate(model, prompt, steps=kw["steps"], gen_length=kw["gen_length"], block_length=kw["block_length"],
                       temperature=kw["temperature"], remasking="random_fixed" if greedy else kw["remasking"],
                       mask_id=kw["mask_id"], cache=rec.attach(canvas), generator=g)
        return out, rec
    model = models["dream"]
    cache = None
    if kw.get("use_cache"):
        kind = kw["cache_type"]
        if kind == "prefill":
            cache = build_cache("dkv_prefill", facts=model.args.facts)
        elif kind == "decoded":
            cache = build_cache("dkv_decode", {"refresh_interval": kw["cache_steps"], "shift": kw["shift_type"]},
                                model.args.facts)
        else:
            cache = build_cache("dkv_pd", {"refresh_interval": kw["cache_steps"], "shift": kw["shift_type"]},
                                model.args.facts)
    rec = Recording(cache)
    out = diffusion_generate(model, prompt, max_new_tokens=kw["max_new_tokens"], steps=kw["steps"],
                             temperature=kw["temperature"], top_p=kw["top_p"], alg=kw["alg"], alg_temp=kw["alg_temp"],
                             cache=rec.attach(canvas))
    return out, rec


@pytest.mark.skipif(not CASES, reason=f"cache goldens not found at {GOLDENS} (set SPARSED_GOLDENS)")
@pytest.mark.parametrize(("name", "setting"), CASES)
def test_reproduces_the_original_code(golden_file, tiny_models, name, setting):
    tensors, meta = golden_file(name)
    prompt = tensors["prompt_gen"]
    out, rec = run_case(tiny_models, name, meta[setting], prompt)
    assert torch.equal(out.sequences, tensors[f"{setting}.tokens"]), setting
    assert out.nfe == int(tensors[f"{setting}.nfe"]), setting
    lengths = [s.rows for s in out.steps]
    assert lengths == tensors[f"{setting}.fwd_len"].tolist(), setting
    if f"{setting}.fwd_offset" in tensors and rec.fed:
        offsets = [int(m.nonzero()[0]) for m in rec.fed]
        assert offsets == tensors[f"{setting}.fwd_offset"].tolist(), setting
    if f"{setting}.fed_mask" in tensors and rec.fed:
        assert torch.equal(torch.stack(rec.fed), tensors[f"{setting}.fed_mask"]), setting

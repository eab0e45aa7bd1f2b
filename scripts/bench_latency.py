"""Step-level latency of every attention method and cache at LLaDA-8B / Dream-7B shapes, and the end-to-end
times composed from them (the SparseD paper's Figures 4 and 5), in one process.

Whole generations at 64k tokens take minutes per method on one GPU (128 steps of ~5 s), so this measures
each kind of step once per (model shape, length) and composes: a generation of T steps is its dense
steps, its pattern-build step and its sparse steps (SparseD, compat=reference: steps 0..int(T*skip) dense,
the pattern built at step int(T*skip)+1, sparse after), or per semi-AR block one refresh plus cached steps
(Fast-dLLM's prefix cache with dense, LoSA, Quest or SparseD on the cache). The composition is checked
against complete sampled generations at ``--validate-length``, each after one untimed generation of the same
setting (the error is reported). Where FlashAttention-4 imports, dense FA4 and SparseD with FA4's
block-sparse kernel are measured too.

Per step: CUDA events (or the host clock on a CPU) around the model forward plus the LM head over the
block's rows, after warm-up (compilation and autotuning excluded and reported apart), median of
``--repeats``. Every variant's output logits are compared with dense attention's at a small length first
(relative error) so that a fast wrong kernel cannot pass. Results are written to ``--out`` after every
measurement (a call that runs out of time keeps what it finished); ``--deadline-s`` stops starting new
ones.

    python scripts/bench_latency.py --shapes llada8b dream7b --lengths 4096 16384 65536 --out $OUT/latency.json
    python scripts/bench_latency.py --tiny --lengths 256 512 --out /tmp/latency.json        # CPU smoke run
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sparsed.attention import GenerationInfo, StepInfo, build_method  # noqa: E402
from sparsed.attention.dense_kernels import available_dense_backends  # noqa: E402
from sparsed.models.kv_cache import KVCache  # noqa: E402
from sparsed.models.loading import random_model  # noqa: E402
from sparsed.models.registry import FAMILIES  # noqa: E402
from sparsed.results import device_info, versions, write_json_atomic  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GEN, BLOCK = 128, 32  # Figure 4: 128 generated tokens, LLaDA's semi-AR block 32
SKIP, SELECT, SP_BLOCK = 0.2, 0.3, 128  # SparseD's long-context setting
SHAPES = {"llada8b": "llada", "dream7b": "dream"}
TINY = {"llada": {"model_type": "llada", "d_model": 128, "n_heads": 4, "n_kv_heads": 4, "n_layers": 2,
                  "mlp_hidden_size": 256, "vocab_size": 512, "mask_token_id": 511},
        "dream": {"model_type": "Dream", "hidden_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2,
                  "num_hidden_layers": 2, "intermediate_size": 256, "vocab_size": 512, "mask_token_id": 511}}


def shape_args(name: str, tiny: bool):  # noqa: ANN201 - ModelArgs
    family = SHAPES[name]
    if tiny:
        arch = TINY[family]
    else:
        cfg = yaml.safe_load((ROOT / "configs" / "model" / f"{family}.yaml").read_text())
        arch = cfg["model"]["architecture"]
    return FAMILIES[family].args_from_config(arch)


class Timer:
    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def __call__(self, fn, repeats: int) -> tuple[float, float]:  # noqa: ANN001
        """(first-call seconds, median seconds of ``repeats`` later calls)."""
        first = self._once(fn)
        times = sorted(self._once(fn) for _ in range(repeats))
        return first, times[len(times) // 2]

    def _once(self, fn) -> float:  # noqa: ANN001
        if self.cuda:
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            a.record()
            fn()
            b.record()
            torch.cuda.synchronize()
            return a.elapsed_time(b) / 1000
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t


class Bench:
    """One model shape at one length: the canvas, the methods, and a forward per kind of step."""

    def __init__(self, model, length: int, device: torch.device) -> None:  # noqa: ANN001
        self.model, self.L, self.P = model, length, length - GEN
        g = torch.Generator(device="cpu").manual_seed(0)
        self.x = torch.randint(0, model.args.vocab_size - 2, (1, length), generator=g).to(device)
        self.x[:, self.P :] = model.args.mask_token_id
        self.facts = model.args.facts

    def info(self, steps: int = 128) -> GenerationInfo:
        return GenerationInfo(1, self.L, self.P, GEN, steps, block_length=BLOCK)

    def forward(self, method, *, rows=None, cache=None, hi=None) -> torch.Tensor:  # noqa: ANN001
        """One step: the forward and the LM head over the rows that predict the current block."""
        hi = self.P + BLOCK if hi is None else hi
        h = self.model.hidden_states(self.x, method, rows=rows, cache=cache)
        lo = 0 if rows is None else rows[0]
        return self.model.head(h[:, self.P - lo : hi - lo])

    def where(self, step: int, block: int = 0, refresh: bool = False, cached: bool = False) -> StepInfo:
        lo, hi = self.P + block * BLOCK, self.P + (block + 1) * BLOCK
        return StepInfo(step=step, block=block, block_lo=lo, block_hi=hi, step_in_block=0 if refresh else 1,
                        refresh=refresh, cached=cached, fresh=(lo, self.L), static=((0, lo),))


KINDS = ("dense", "sparsed", "streaming", "cache")


def measure(model, name: str, length: int, timer: Timer, repeats: int, record,  # noqa: ANN001
            kinds: tuple[str, ...] = KINDS) -> None:
    """The step kinds of ``name`` at ``length`` (``kinds``: dense is always measured, the ratios need it);
    ``record(key, value)`` stores each as it comes."""
    dev = model.device
    b = Bench(model, length, dev)
    backends = [x for x in ("cudnn", "flash", "fa3", "fa4") if x in available_dense_backends()] or ["auto"]
    for backend in backends:
        m = build_method("dense", {"backend": backend}, b.facts)
        record(f"dense_{backend}", step_stats(timer, lambda m=m: b.forward(m), repeats, dev))
    # SparseD: the build step (dense + pattern) and the sparse steps, FlexAttention on the block grid, and
    # FA4's block-sparse kernel (its dense steps FA4 too) where FlashAttention-4 imports
    for prefix, kernel_settings in (sparsed_variants(backends) if "sparsed" in kinds else {}).items():
        sp = build_method("sparsed", sparsed_settings(kernel_settings), b.facts)
        sp.start(b.info())
        build, first_sparse = sp.schedule(128)

        def build_step(sp=sp, build=build) -> None:
            sp.patterns = {}
            sp.set_step(build)
            b.forward(sp)

        record(f"{prefix}_build_step", step_stats(timer, build_step, repeats, dev))
        sp.stats.clear()  # the density of the sparse steps alone (the build steps count 1)
        sp.set_step(first_sparse)
        record(f"{prefix}_sparse_step", step_stats(timer, lambda sp=sp: b.forward(sp), repeats, dev))
        record(f"{prefix}_sparse_density", sp.report()["density_mean"])
    # StreamingLLM: sinks + a window of half the length (the paper's Figure 4 setting)
    if "streaming" in kinds:
        st = build_method("streaming_llm", {"ws": length // 2, "sink_ratio": 0.1}, b.facts)
        st.start(b.info())
        st.set_step(0)
        record("streaming_step", step_stats(timer, lambda: b.forward(st), repeats, dev))
    # the block cache: a refresh (full forward filling the cache) and the cached step of each block
    cached_methods = {"prefix_dense": ("dense", {}), "prefix_losa": ("losa", {"budget": 256}),
                      "prefix_quest": ("quest", {"budget": 256}),
                      "prefix_sparsed_cache": ("sparsed_cache", {"select": SELECT, "block_size": SP_BLOCK})}
    for key, (method_name, settings) in (cached_methods if "cache" in kinds else {}).items():
        m = build_method(method_name, settings, b.facts)
        m.start(b.info())
        kv = KVCache(length)
        per_block = {}
        # the first and the last block (128 and 32 recomputed rows); blocks between are interpolated
        for blk in (0, GEN // BLOCK - 1):
            lo = b.P + blk * BLOCK

            def refresh(m=m, kv=kv, blk=blk) -> None:
                m.set_step(blk * BLOCK, b.where(blk * BLOCK, blk, refresh=True))
                b.forward(m, cache=kv, hi=b.P + (blk + 1) * BLOCK)

            def cached(m=m, kv=kv, blk=blk, lo=lo) -> None:
                m.set_step(blk * BLOCK + 1, b.where(blk * BLOCK + 1, blk, cached=True))
                b.forward(m, rows=(lo, length), cache=kv, hi=b.P + (blk + 1) * BLOCK)

            if blk == 0:
                r = step_stats(timer, refresh, 1, dev)
            else:
                with torch.no_grad():
                    refresh()
                r = None
            per_block[blk] = {"refresh": r, "cached": step_stats(timer, cached, repeats, dev)}
        first, last = per_block[0], per_block[GEN // BLOCK - 1]
        blocks = []
        for blk in range(GEN // BLOCK):
            w = blk / (GEN // BLOCK - 1)
            c = (1 - w) * first["cached"]["median_s"] + w * last["cached"]["median_s"]
            blocks.append({"refresh": first["refresh"], "cached": {"median_s": round(c, 6)}})
        rep = m.report()
        record(key, {"blocks": blocks, "measured": per_block, "kv_density": rep.get("kv_density")})


# result-key prefix -> SparseD's kernel settings: Flex (dense steps: SDPA's choice, cuDNN on CUDA) and FA4's
# block-sparse kernel with FA4 dense steps; a variant runs where its dense backend exists
SPARSED_VARIANTS: dict[str, dict[str, str]] = {"sparsed": {}, "sparsed_fa4": {"kernel": "fa4", "dense_backend": "fa4"}}


def sparsed_variants(backends: list[str]) -> dict[str, dict[str, str]]:
    return {k: v for k, v in SPARSED_VARIANTS.items() if v.get("dense_backend", "auto") in ("auto", *backends)}


def sparsed_settings(kernel_settings: dict[str, str]) -> dict[str, Any]:
    """SparseD's long-context setting (the released schedule) with one variant's kernels."""
    return {"skip": SKIP, "select": SELECT, "block_size": SP_BLOCK, "compat": "reference", **kernel_settings}


def checks(model, length: int) -> dict[str, float]:  # noqa: ANN001
    """Relative errors (vs dense on the same canvas) of the paths that must be exact: a cached step, and
    SparseD / LoSA / Quest / SparseD-on-cache with everything selected. In bf16 over 32 random layers these land near
    4e-2 (H200 runs: 0.032-0.047), from summation order alone; float64 exactness is in the tests."""
    b = Bench(model, length, model.device)
    lo = b.P
    full = b.forward(None).float()

    def rel(out: torch.Tensor) -> float:
        return round(float((out.float() - full).norm() / full.norm()), 6)

    res = {}
    with torch.no_grad():
        sp = build_method("sparsed", {"skip": SKIP, "select": 1.0, "block_size": SP_BLOCK, "compat": "paper"}, b.facts)
        sp.start(b.info())
        sp.set_step(127)
        res["sparsed_select1"] = rel(b.forward(sp))
        for name, settings in (("dense", {}), ("losa", {"budget": 1 << 30, "active_fraction": 1.0}),
                               ("quest", {"budget": 1 << 30}), ("sparsed_cache", {"select": 1.0, "block_size": 32})):
            m = build_method(name, settings, b.facts)
            m.start(b.info())
            kv = KVCache(length)
            m.set_step(0, b.where(0, 0, refresh=True))
            b.forward(m, cache=kv)
            m.set_step(1, b.where(1, 0, cached=True))
            res[f"prefix_{name}_all"] = rel(b.forward(m, rows=(lo, length), cache=kv))
    return res


def step_stats(timer: Timer, fn, repeats: int, dev: torch.device) -> dict[str, float]:  # noqa: ANN001
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    with torch.no_grad():
        first, median = timer(fn, repeats)
    out = {"median_s": round(median, 6), "first_call_s": round(first, 4)}
    if dev.type == "cuda":
        out["peak_gib"] = round(torch.cuda.max_memory_allocated(dev) / 2**30, 3)
    return out


def compose(r: dict[str, Any], steps: int) -> dict[str, float]:
    """End-to-end seconds of a ``steps``-step generation (128 tokens, blocks of 32) per method."""
    dense = min(v["median_s"] for k, v in r.items() if k.startswith("dense_"))
    out = {f"dense_{k[6:]}": round(steps * v["median_s"], 3) for k, v in r.items() if k.startswith("dense_")}
    build = int(steps * SKIP) + 1
    sparse_steps = steps - build - 1
    d_auto = r.get("dense_cudnn", r.get("dense_auto", {"median_s": dense}))["median_s"]
    # each SparseD variant's dense steps use its own dense kernel
    for prefix, settings in SPARSED_VARIANTS.items():
        backend = settings.get("dense_backend")
        d_steps = d_auto if backend is None else r.get(f"dense_{backend}", {}).get("median_s")
        if f"{prefix}_build_step" in r and d_steps is not None:
            out[prefix] = round(build * d_steps + r[f"{prefix}_build_step"]["median_s"]
                                + sparse_steps * r[f"{prefix}_sparse_step"]["median_s"], 3)
    if "streaming_step" in r:
        out["streaming_llm"] = round(steps * r["streaming_step"]["median_s"], 3)
    per_block = steps // (GEN // BLOCK)
    for key in ("prefix_dense", "prefix_losa", "prefix_quest", "prefix_sparsed_cache"):
        if key in r:
            out[key] = round(sum(b["refresh"]["median_s"] + (per_block - 1) * b["cached"]["median_s"]
                                 for b in r[key]["blocks"]), 3)
    out["fastest_dense"] = round(steps * dense, 3)
    return out


def validate(model, length: int, timer: Timer, warmup: bool = True, record=None) -> dict[str, Any]:  # noqa: ANN001
    """Complete sampled generations (T = 128) against the composed times of the same length.

    With ``warmup`` each setting first runs one untimed generation, as the step timings exclude one-time
    costs (FlexAttention / FA4 compilation, cuDNN plan choice, allocator growth); the timed one follows."""
    from sparsed.cache import build_cache
    from sparsed.sampling.llada import generate as llada_generate

    b = Bench(model, length, model.device)
    prompt = b.x[:, : b.P]
    out = {}
    backend = "cudnn" if model.device.type == "cuda" else "flash"
    runs = {f"dense_{backend}": (build_method("dense", {"backend": backend}), None),
            "prefix_dense": (build_method("dense"), build_cache("prefix"))}
    for prefix, settings in sparsed_variants(available_dense_backends()).items():
        if "dense_backend" in settings:  # the variant's own dense kernel, complete too
            runs[f"dense_{settings['dense_backend']}"] = (build_method("dense", {"backend": settings["dense_backend"]}), None)
        runs[prefix] = (build_method("sparsed", sparsed_settings(settings), b.facts), None)
    for key, (method, cache) in runs.items():
        if model.args.arch != "llada":
            break
        for _ in range(2 if warmup else 1):  # the last generation is the timed one
            gen = llada_generate(model, prompt, steps=128, gen_length=GEN, block_length=BLOCK, attention=method,
                                 cache=cache)
        out[key] = round(gen.total_time, 3)
        if record is not None:  # a call cut short keeps the generations it finished
            record(dict(out))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", nargs="+", default=["llada8b", "dream7b"], choices=sorted(SHAPES))
    ap.add_argument("--lengths", type=int, nargs="+", default=[4096, 8192, 16384, 32768, 65536])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--validate-length", type=int, default=4096)
    ap.add_argument("--fig5-steps", type=int, nargs="+", default=[64, 128, 256, 512, 1024])
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS,
                    help="step kinds to measure (dense always): e.g. --kinds dense sparsed for a quick kernel rerun")
    ap.add_argument("--tiny", action="store_true", help="tiny random models (a CPU smoke run of this script)")
    ap.add_argument("--deadline-s", type=float, default=None)
    ap.add_argument("--validate-only", action="store_true", help="only the complete generations (compare offline)")
    ap.add_argument("--no-validate-warmup", action="store_true",
                    help="time each complete generation cold (no untimed generation first)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    timer = Timer(dev)
    t0 = time.time()
    data: dict[str, Any] = {"command": " ".join(sys.argv), "device": device_info(dev), "versions": versions(),
                            "results": {}, "composed": {}, "fig5": {}, "validation": {}, "notes": []}

    def save() -> None:
        data["elapsed_s"] = round(time.time() - t0, 1)
        write_json_atomic(args.out, data)

    for shape in args.shapes:
        torch.manual_seed(0)
        model = random_model(shape_args(shape, args.tiny), device=str(dev), dtype="bf16" if dev.type == "cuda" else "fp32")
        for length in [] if args.validate_only else args.lengths:
            if args.deadline_s is not None and time.time() - t0 > args.deadline_s:
                data["notes"].append(f"deadline: {shape} from {length} tokens on not measured")
                break
            res = data["results"].setdefault(shape, {}).setdefault(str(length), {})

            def record(key: str, value: Any, res=res, shape=shape, length=length) -> None:  # noqa: ANN401
                res[key] = value
                print(f"{shape} L={length} {key}: {json.dumps(value)[:160]}", flush=True)
                save()

            try:
                if length == min(args.lengths):
                    record("checks_rel_error_vs_dense", checks(model, length))
                measure(model, shape, length, timer, args.repeats if length <= 16384 else min(2, args.repeats), record,
                        tuple(args.kinds))
            except torch.OutOfMemoryError as exc:
                data["notes"].append(f"{shape} L={length}: out of memory ({str(exc)[:120]})")
                torch.cuda.empty_cache()
                continue
            data["composed"].setdefault(shape, {})[str(length)] = compose(res, 128)
            if length == max(args.lengths):  # Figure 5 at the run's longest length (the paper's: 64k)
                data["fig5"][shape] = {str(T): compose(res, T) for T in args.fig5_steps}
                data.setdefault("fig5_length", {})[shape] = length
            save()
        if args.validate_length and not (args.deadline_s is not None and time.time() - t0 > args.deadline_s):
            composed = data["composed"].get(shape, {}).get(str(args.validate_length), {})

            def record_validation(measured: dict[str, float], shape=shape, composed=composed) -> None:
                data["validation"][shape] = {
                    k: {"measured_s": v, "composed_s": composed.get(k),
                        "error": None if not composed.get(k) else round(composed[k] / v - 1, 4)}
                    for k, v in measured.items()}
                print(f"{shape} validation: {json.dumps(data['validation'][shape])[:300]}", flush=True)
                save()

            validate(model, args.validate_length, timer, warmup=not args.no_validate_warmup, record=record_validation)
        del model
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    save()
    print(json.dumps({"composed": data["composed"], "validation": data["validation"]}, indent=1))


if __name__ == "__main__":
    main()

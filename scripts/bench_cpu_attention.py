"""Check and time SparseD's CPU attention kernels on the shipped small model, in one call.

For each canvas length (prompt + generated tokens), on the real post-RoPE q/k/v of the shipped model
(a RULER needle-in-a-haystack prompt) and the pattern SparseD itself selects from them:

* per layer: dense SDPA, the gather block-sparse kernel (the CPU default of ``sparsed.kernel=flex``),
  masked SDPA (the old CPU path, ``sparsed.kernel=sdpa_mask``) and, with ``--flex``, compiled
  FlexAttention (its inductor build time is reported apart);
* the pattern build for all layers (the fused flash-kernel estimator and, up to ``--explicit-max``, the
  explicit-softmax one it replaced);
* whole-model forwards through ``build_method('sparsed', ...)``: a dense step, a sparse step, the step
  that builds the pattern, and a forward without attention (the fixed cost of the linear layers), from
  which the attention share of a dense step follows; then profiles of the dense and sparse steps.

Every kernel is first checked against float64 (on a sample of query blocks, so that 8k fits in memory).
Timings exclude a warm-up call and are medians over rounds; each round runs every contender once, in
turn, after waiting for the machine to be idle (other processes on a shared 2-core box would otherwise
land on one contender only). Writes ``<out>.json`` and ``<out>.md``.

    python scripts/bench_cpu_attention.py --lengths 2048 4096 8192 --threads 2
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sparsed.attention.selection as selection  # noqa: E402
from sparsed.attention import GenerationInfo, build_method  # noqa: E402
from sparsed.attention.base import AttentionMethod  # noqa: E402
from sparsed.attention.cpu_block_sparse import gather_block_sparse_attention  # noqa: E402
from sparsed.attention.kernels import (  # noqa: E402
    dense_attention,
    flex_block_sparse,
    repeat_kv,
    sdpa_block_sparse,
)
from sparsed.attention.selection import select_blocks  # noqa: E402
from sparsed.models.loading import load_model  # noqa: E402
from sparsed.results import versions, write_json_atomic  # noqa: E402

MODEL = "sparsed/assets/small-dlm"
CATEGORIES = {  # profiler op -> where the time goes
    "aten::_scaled_dot_product_flash_attention_for_cpu": "attention (SDPA flash)",
    "aten::index_select": "gather / scatter",
    "aten::index_copy_": "gather / scatter",
    "aten::constant_pad_nd": "gather / scatter",
    "aten::mm": "linear layers",
    "aten::addmm": "linear layers",
    "aten::bmm": "linear layers",
    "aten::_softmax": "softmax",
}


# -- the machine ------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def idle_fraction(window_s: float = 0.2) -> float:
    """Share of all CPUs idle over ``window_s`` (1.0 where /proc/stat is missing)."""
    def snap() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return fields[3] + fields[4], sum(fields)

    try:
        i0, t0 = snap()
        time.sleep(window_s)
        i1, t1 = snap()
    except OSError:
        return 1.0
    return (i1 - i0) / max(1, t1 - t0)


class QuietGate:
    """Waits (up to ``max_wait_s``) until the other processes leave the CPUs idle, and counts the misses."""

    def __init__(self, min_idle: float, max_wait_s: float) -> None:
        self.min_idle, self.max_wait_s = min_idle, max_wait_s
        self.rounds = self.noisy_rounds = 0
        self.waited_s = 0.0

    def wait(self) -> None:
        self.rounds += 1
        start = time.perf_counter()
        while idle_fraction() < self.min_idle:
            if time.perf_counter() - start > self.max_wait_s:
                self.noisy_rounds += 1
                break
            time.sleep(0.5)
        self.waited_s += time.perf_counter() - start


def timed_rounds(fns: dict[str, Callable[[], Any]], repeats: int, gate: QuietGate) -> dict[str, dict[str, Any]]:
    """Median wall time of every contender; each round runs all of them once, rotating the order.

    Also the process CPU time per call (all threads): a guest does not charge time stolen by the host or
    by other processes to it, so it moves less than wall time on a shared machine.
    """
    for fn in fns.values():
        fn()  # warm-up: first-call allocations, plan caches, lazy imports
    times: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in range(repeats):
        gate.wait()
        for name in names[r % len(names):] + names[: r % len(names)]:
            c0, t0 = time.process_time(), time.perf_counter()
            fns[name]()
            times[name].append((time.perf_counter() - t0) * 1e3)
            cpu[name].append((time.process_time() - c0) * 1e3)
    return {n: {"ms": statistics.median(t), "ms_min": min(t), "cpu_ms": statistics.median(cpu[n]),
                "ms_all": [round(x, 2) for x in t]} for n, t in times.items()}


# -- inputs -----------------------------------------------------------------------------------------


def prompt_tokens(n: int, seed: int) -> tuple[list[int], str]:
    """``n`` prompt tokens of a RULER NIAH sample (random tokens where the generator is unavailable)."""
    try:
        from sparsed.data.ruler import generate
        from sparsed.tokenizer import load_tokenizer

        tok = load_tokenizer(MODEL)
        text = generate("niah_single_1", n + 512, tok, 1, seed=seed, use_cache=False)[0]["input"]
        ids = tok(text, add_special_tokens=False)["input_ids"]
        while len(ids) < n:
            ids = ids + ids
        return ids[:n], "ruler niah_single_1"
    except Exception as exc:  # noqa: BLE001 - the benchmark still runs, and says what it ran on
        g = torch.Generator().manual_seed(seed)
        return torch.randint(3, 4000, (n,), generator=g).tolist(), f"random tokens ({type(exc).__name__})"


class Recorder(AttentionMethod):
    """Dense attention that keeps every layer's post-RoPE q/k/v."""

    name = "recorder"

    def __init__(self) -> None:
        super().__init__()
        self.qkv: dict[int, tuple[torch.Tensor, ...]] = {}

    def attend(self, layer, q, k, v, key_valid):  # noqa: ANN001, ANN201
        self.qkv[layer] = (q.contiguous(), k.contiguous(), v.contiguous())
        return dense_attention(q, k, v, key_valid)


class NoAttention(AttentionMethod):
    """Returns v unchanged: a forward with every linear layer and no attention work (the fixed cost)."""

    name = "no_attention"

    def attend(self, layer, q, k, v, key_valid):  # noqa: ANN001, ANN201
        return v


# -- checks -----------------------------------------------------------------------------------------


def sample_blocks(nq: int, count: int = 6) -> list[int]:
    picks = {0, nq - 1, nq // 2} | {round(i * (nq - 1) / (count - 1)) for i in range(count)}
    return sorted(picks)


def reference_rows64(q, k, v, grid, bs, blocks: list[int]) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: ANN001
    """Float64 block-sparse attention for the query rows of ``blocks`` only: (rows index, output)."""
    L = q.shape[2]
    rows = torch.cat([torch.arange(i * bs, min(L, (i + 1) * bs)) for i in blocks])
    n_rep = q.shape[1] // k.shape[1]
    kk, vv = repeat_kv(k, n_rep).double(), repeat_kv(v, n_rep).double()
    keep = grid[:, :, rows // bs].repeat_interleave(bs, dim=-1)[..., :L]  # [B, H, rows, L]
    s = q[:, :, rows].double() @ kk.transpose(-1, -2) / math.sqrt(q.shape[-1])
    p = torch.softmax(s.masked_fill(~keep, -math.inf), dim=-1)
    return rows, p @ vv


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out.double() - ref).norm() / ref.norm())


def mass_rows64(q, k, scale, bs, blocks: list[int]) -> torch.Tensor:  # noqa: ANN001
    """Float64 block mass of the query blocks ``blocks``: [B, H, len(blocks), nk]."""
    L, Lk = q.shape[2], k.shape[2]
    nk = math.ceil(Lk / bs)
    n_rep = q.shape[1] // k.shape[1]
    kk = repeat_kv(k, n_rep).double()
    out = []
    for i in blocks:
        p = torch.softmax(q[:, :, i * bs : min(L, (i + 1) * bs)].double() @ kk.transpose(-1, -2) * scale, dim=-1)
        col = F.pad(p.sum(-2), (0, nk * bs - Lk))
        out.append(col.reshape(*col.shape[:-1], nk, bs).sum(-1))
    return torch.stack(out, dim=2)


# -- the benchmark ----------------------------------------------------------------------------------


def sparsed_method(bs: int, select: float) -> AttentionMethod:
    return build_method("sparsed", {"select": select, "block_size": bs, "skip": 0.2}, num_heads=8)


def profile_ops(fn: Callable[[], Any]) -> dict[str, float]:
    """Self CPU time (ms) of one call, grouped by CATEGORIES (the rest: elementwise / other)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    groups: dict[str, float] = {}
    for ev in prof.key_averages():
        cat = CATEGORIES.get(ev.key, "elementwise / other")
        groups[cat] = groups.get(cat, 0.0) + ev.self_cpu_time_total / 1e3
    return {k: round(v, 1) for k, v in sorted(groups.items(), key=lambda kv: -kv[1])}


def bench_length(model, L: int, args: argparse.Namespace, gate: QuietGate) -> dict[str, Any]:  # noqa: ANN001
    gen = args.gen_length
    prompt, source = prompt_tokens(L - gen, seed=L)
    x = torch.tensor([prompt + [model.args.mask_token_id] * gen])
    rec = Recorder()
    with torch.no_grad():
        model.token_logits(x, slice(L - gen, L), rec)
    out: dict[str, Any] = {"L": L, "prompt": source, "timed_layer": model.args.n_layers // 2, "kernels": [],
                           "pattern": [], "model": [], "checks": [], "profiles": {}, "realised_density": {}}
    for bs in args.blocks:
        bench_block(model, rec, x, bs, args, gate, out, with_no_attention=bs == args.blocks[0])
    return out


def bench_block(model, rec: Recorder, x: torch.Tensor, bs: int, args: argparse.Namespace,  # noqa: ANN001
                gate: QuietGate, out: dict[str, Any], with_no_attention: bool) -> None:
    L, gen = x.shape[1], args.gen_length
    at = slice(L - gen, L)
    q, k, v = rec.qkv[out["timed_layer"]]
    method = sparsed_method(bs, args.select)
    method.start(GenerationInfo(1, L, L - gen, gen, args.steps))
    rule = method.rule(q.shape[-1])
    grids = {i: select_blocks(qq, kk, L - gen, rule) for i, (qq, kk, _) in rec.qkv.items()}
    grid = grids[out["timed_layer"]]
    density = float(grid.float().mean())
    counts = grid.sum(-1)

    # float64 checks first: kernels on the timed layer, block masses and grids on every layer
    blocks = sample_blocks(grid.shape[-2])
    rows, ref = reference_rows64(q, k, v, grid, bs, blocks)
    contenders: dict[str, Callable[[], torch.Tensor]] = {
        "gather": lambda: gather_block_sparse_attention(q, k, v, grid, bs),
        "masked_sdpa": lambda: sdpa_block_sparse(q, k, v, grid, bs),
    }
    compile_s = None
    if args.flex:
        t0 = time.perf_counter()
        try:
            flex_block_sparse(q, k, v, grid, bs, compile=True)
            compile_s = time.perf_counter() - t0
            contenders["flex_compiled"] = lambda: flex_block_sparse(q, k, v, grid, bs, compile=True)
        except Exception as exc:  # noqa: BLE001 - report, keep going
            out["checks"].append({"block": bs, "kernel": "flex_compiled", "error": repr(exc)[:300]})
    for name, fn in contenders.items():
        out["checks"].append({"block": bs, "kernel": name, "rel_err_vs_float64": rel_err(fn()[:, :, rows], ref)})
    dense_rows, dense_ref = reference_rows64(q, k, v, torch.ones_like(grid), bs, blocks)
    out["checks"].append({"block": bs, "kernel": "dense_sdpa",
                          "rel_err_vs_float64": rel_err(dense_attention(q, k, v)[:, :, dense_rows], dense_ref)})
    mass = selection.block_mass(q, k, rule.scale, bs)[:, :, blocks]
    out["checks"].append({"block": bs, "kernel": "block_mass (pattern estimate)",
                          "rel_err_vs_float64": rel_err(mass, mass_rows64(q, k, rule.scale, bs, blocks))})

    def build_all() -> None:
        for qq, kk, _ in rec.qkv.values():
            select_blocks(qq, kk, L - gen, rule)

    def build_all_explicit() -> None:
        orig = selection.flash_mass_supported
        selection.flash_mass_supported = lambda *a: False
        try:
            build_all()
        finally:
            selection.flash_mass_supported = orig

    if L <= args.explicit_max:
        orig = selection.flash_mass_supported
        selection.flash_mass_supported = lambda *a: False
        try:
            same = all(torch.equal(select_blocks(qq, kk, L - gen, rule), grids[i]) for i, (qq, kk, _) in rec.qkv.items())
        finally:
            selection.flash_mass_supported = orig
        out["checks"].append({"block": bs, "kernel": "grid fused == grid explicit (all layers)", "equal": same})

    # per-layer kernels
    with torch.no_grad():
        res = timed_rounds({"dense_sdpa": lambda: dense_attention(q, k, v), **contenders}, args.repeats, gate)
    for name, r in res.items():
        row = {"block": bs, "kernel": name, "density": round(density, 4), **r,
               "kept_blocks_per_row": [int(counts.min()), int(counts.max())]}
        if name != "dense_sdpa":
            row["speedup_vs_dense"] = res["dense_sdpa"]["ms"] / r["ms"]
        if name == "flex_compiled":
            row["compile_s"] = compile_s
        out["kernels"].append(row)

    # pattern build, all layers
    pattern_fns = {"fused": build_all} | ({"explicit": build_all_explicit} if L <= args.explicit_max else {})
    for name, r in timed_rounds(pattern_fns, max(3, args.repeats // 2), gate).items():
        out["pattern"].append({"block": bs, "estimator": name, "layers": len(rec.qkv), **r})

    # whole-model steps
    build_step, first_sparse = method.schedule(args.steps)

    def step(i: int, m: AttentionMethod = method) -> Callable[[], Any]:
        def run() -> Any:
            m.set_step(i)
            return model.token_logits(x, at, m)
        return run

    no_attn = NoAttention()
    with torch.no_grad():
        step(build_step)()  # builds the patterns the sparse step reuses
        if L <= args.explicit_max:  # the whole sparse step against the masked-SDPA reference kernel
            ref_method = build_method("sparsed", {"select": args.select, "block_size": bs, "skip": 0.2,
                                                  "kernel": "sdpa_mask"}, num_heads=8)
            ref_method.start(GenerationInfo(1, L, L - gen, gen, args.steps))
            step(build_step, ref_method)()
            a, b = step(first_sparse)(), step(first_sparse, ref_method)()
            out["checks"].append({"block": bs, "kernel": "sparse step logits, gather vs sdpa_mask",
                                  "max_abs_diff": float((a - b).abs().max()), "max_abs_logit": float(b.abs().max())})
        fns = {"dense_step": step(0), "sparse_step": step(first_sparse), "build_step": step(build_step)}
        if with_no_attention:
            fns["no_attention"] = lambda: model.token_logits(x, at, no_attn)
        res = timed_rounds(fns, args.repeats, gate)
        step(build_step)()  # the profile's sparse step reuses this generation's pattern
        out["profiles"][str(bs)] = {"dense_step": profile_ops(step(0)), "sparse_step": profile_ops(step(first_sparse)),
                                    "pattern_all_layers": profile_ops(build_all)}
    for name, r in res.items():
        out["model"].append({"block": bs, "forward": name, "density": round(density, 4), **r})
    out["realised_density"][str(bs)] = method.report()["density_mean"]


def summarise(results: list[dict[str, Any]], threads: int) -> dict[str, Any]:
    """Attention share, speed-ups and the two targets, per length and block size."""
    rows = []
    for r in results:
        model = {(m["block"], m["forward"]): m["ms"] for m in r["model"]}
        no_attn = next(m["ms"] for m in r["model"] if m["forward"] == "no_attention")
        for bs in sorted({m["block"] for m in r["model"]}):
            dense, sparse = model[(bs, "dense_step")], model[(bs, "sparse_step")]
            pattern = next(p["ms"] for p in r["pattern"] if p["block"] == bs and p["estimator"] == "fused")
            rows.append({
                "L": r["L"], "block": bs, "dense_step_ms": dense, "sparse_step_ms": sparse,
                "step_speedup": dense / sparse, "no_attention_ms": no_attn,
                "attention_share_of_dense_step": 1 - no_attn / dense,
                "speedup_ceiling_if_attention_were_free": dense / no_attn,
                "pattern_all_layers_ms": pattern, "pattern_over_dense_step": pattern / dense,
                "target_step_speedup_1.8x_met": dense / sparse >= 1.8 if r["L"] == 4096 else None,
                "target_pattern_le_1_dense_step_met": pattern <= dense if r["L"] == 4096 else None,
            })
    return {"threads": threads, "rows": rows}


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# SparseD attention on the CPU (shipped small model)", "",
        f"`{result['command']}`", "",
        f"CPU: {result['device']['cpu']}, {result['device']['threads']} threads "
        f"({result['device']['cpu_count']} logical CPUs visible); torch {result['versions']['torch']}; "
        f"select {result['config']['select']}, {result['config']['gen_length']} generated tokens per canvas; "
        f"medians of {result['config']['repeats']} interleaved rounds "
        f"({result['quiet']['noisy_rounds']} of {result['quiet']['rounds']} rounds started on a busy machine).", "",
        "## Per layer (one attention call, real q/k/v of layer "
        f"{result['results'][0]['timed_layer']}, ms)", "",
        "| L | block | density | dense SDPA | gather (speed-up) | masked SDPA | flex compiled (build s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["results"]:
        for bs in result["config"]["blocks"]:
            k = {x["kernel"]: x for x in r["kernels"] if x["block"] == bs}
            flex = k.get("flex_compiled")
            flex_s = f"{flex['ms']:.1f} ({flex['compile_s']:.1f})" if flex else "-"
            lines.append(f"| {r['L']} | {bs} | {k['gather']['density']:.3f} | {k['dense_sdpa']['ms']:.1f} | "
                         f"{k['gather']['ms']:.1f} ({k['gather']['speedup_vs_dense']:.2f}x) | "
                         f"{k['masked_sdpa']['ms']:.1f} | {flex_s} |")
    lines += ["", "## Whole model (one forward, ms) and pattern build (all layers)", "",
              "| L | block | dense step | sparse step | speed-up | no-attention forward | attention share of dense | "
              "ceiling | pattern, all layers (fused) | pattern / dense step | pattern, explicit (old) |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in result["summary"]["rows"]:
        r = next(x for x in result["results"] if x["L"] == s["L"])
        old = next((p["ms"] for p in r["pattern"] if p["block"] == s["block"] and p["estimator"] == "explicit"), None)
        lines.append(f"| {s['L']} | {s['block']} | {s['dense_step_ms']:.0f} | {s['sparse_step_ms']:.0f} | "
                     f"{s['step_speedup']:.2f}x | {s['no_attention_ms']:.0f} | "
                     f"{100 * s['attention_share_of_dense_step']:.0f}% | "
                     f"{s['speedup_ceiling_if_attention_were_free']:.2f}x | {s['pattern_all_layers_ms']:.0f} | "
                     f"{s['pattern_over_dense_step']:.2f} | {'-' if old is None else f'{old:.0f}'} |")
    lines += ["", "## Where a step's time goes (profiler, self CPU ms of one forward)", ""]
    for r in result["results"]:
        for bs, prof in r.get("profiles", {}).items():
            for name, groups in prof.items():
                parts = ", ".join(f"{k} {v:.0f}" for k, v in groups.items())
                lines.append(f"- L {r['L']}, block {bs}, {name}: {parts}")
    lines += ["", "## Checks against float64 (sampled query blocks)", ""]
    for r in result["results"]:
        for c in r["checks"]:
            val = {k: v for k, v in c.items() if k not in ("block", "kernel")}
            lines.append(f"- L {r['L']}, block {c['block']}, {c['kernel']}: {val}")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", type=int, nargs="+", default=[2048, 4096, 8192])
    ap.add_argument("--blocks", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--select", type=float, default=0.3)
    ap.add_argument("--gen-length", type=int, default=256)
    ap.add_argument("--steps", type=int, default=64, help="denoising steps of the schedule the method is told")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--flex", action=argparse.BooleanOptionalAction, default=True,
                    help="also time compiled FlexAttention (inductor builds it once per shape)")
    ap.add_argument("--explicit-max", type=int, default=4096,
                    help="longest canvas at which the old explicit estimator and the masked step check run")
    ap.add_argument("--min-idle", type=float, default=0.85, help="idle CPU share a round waits for")
    ap.add_argument("--max-wait", type=float, default=20.0, help="seconds a round waits for an idle machine")
    ap.add_argument("--out", default="results/latency/cpu_kernels")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(MODEL, device="cpu", dtype="fp32")
    gate = QuietGate(args.min_idle, args.max_wait)
    results = []
    for L in args.lengths:
        t0 = time.perf_counter()
        results.append(bench_length(model, L, args, gate))
        print(f"L={L} done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    result = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "device": {"cpu": cpu_model(), "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
                   "capability": torch.backends.cpu.get_cpu_capability(), "platform": platform.platform()},
        "versions": versions(),
        "config": {k: v for k, v in vars(args).items() if k != "out"},
        "quiet": {"rounds": gate.rounds, "noisy_rounds": gate.noisy_rounds, "waited_s": round(gate.waited_s, 1)},
        "results": results,
        "summary": summarise(results, torch.get_num_threads()),
    }
    write_json_atomic(f"{args.out}.json", result)
    md = markdown(result)
    Path(f"{args.out}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()

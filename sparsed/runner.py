"""The body of ``run.py``: validate, build the prompt, load the model, generate, time, write result.json."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from sparsed.attention.base import AttentionMethod
from sparsed.attention.registry import build_method
from sparsed.config import EVAL_TASKS, check_canvas_length, validate
from sparsed.config_errors import ConfigError
from sparsed.eval.ruler_metrics import string_match_all
from sparsed.models.loading import ARCHITECTURES, args_for, load_model, random_model, resolve_checkpoint
from sparsed.models.transformer import DiffusionLM
from sparsed.results import device_info, peak_memory, reset_peak_memory, versions, write_json_atomic
from sparsed.sampling.dispatch import sample, warmup_steps

log = logging.getLogger("sparsed")


def load_run_tokenizer(cfg: DictConfig):  # noqa: ANN201 - a transformers tokenizer
    from sparsed.tokenizer import load_tokenizer

    source = cfg.model.tokenizer or (cfg.model.path if cfg.model.init == "pretrained" else None)
    if source and cfg.model.init == "pretrained" and source == cfg.model.path:
        source = str(resolve_checkpoint(source))
    return load_tokenizer(source)


def build_model(cfg: DictConfig, tokenizer: Any) -> DiffusionLM:
    m = cfg.model
    if m.init == "pretrained":
        return load_model(m.path, device=m.device, dtype=m.dtype, expect_arch=m.arch)
    arch = dict(OmegaConf.to_container(m.architecture, resolve=True))
    if arch.get("mask_token_id", -1) < 0:
        mask = tokenizer.convert_tokens_to_ids("<|mdm_mask|>")
        if mask is None or mask == tokenizer.unk_token_id:
            raise ConfigError("model.architecture.mask_token_id=-1 but the tokenizer has no <|mdm_mask|> token")
        arch["mask_token_id"] = mask
        arch.setdefault("eos_token_id", tokenizer.eos_token_id)
        arch.setdefault("pad_token_id", tokenizer.pad_token_id or tokenizer.eos_token_id)
    args = ARCHITECTURES[m.arch].args_from_config(arch)
    if args.vocab_size < len(tokenizer):
        raise ConfigError(f"model.architecture vocab size {args.vocab_size} < tokenizer size {len(tokenizer)}")
    return random_model(args, device=m.device, dtype=m.dtype, seed=m.seed)


def make_method(cfg: DictConfig, name: str, settings: Any, model: DiffusionLM) -> AttentionMethod:
    if name == "sparsed" and settings.importance_scale == "auto":
        arch_mod = ARCHITECTURES[model.args.arch]
        settings.importance_scale = (
            arch_mod.REFERENCE_IMPORTANCE_SCALE if settings.compat == "reference" else "head_dim"
        )
    return build_method(name, settings, num_heads=model.args.n_heads)


def answer_score(text: str, answers: list[str]) -> float:
    """RULER's string_match_all for one sample as a fraction (NaN when the prompt has no gold answer)."""
    return string_match_all([text], [answers]) / 100 if answers else float("nan")


def check_checkpoint(cfg: DictConfig) -> None:
    """A missing folder or a checkpoint of another architecture fails here, before anything heavy."""
    if cfg.model.init == "pretrained":
        args_for(resolve_checkpoint(cfg.model.path), cfg.model.arch)


def prepare(cfg: DictConfig, method_name: str, settings: Any) -> tuple[Any, DiffusionLM, AttentionMethod]:
    """Tokenizer, model and attention method for a validated config (shared with the evaluation tasks)."""
    check_checkpoint(cfg)
    tokenizer = load_run_tokenizer(cfg)
    model = build_model(cfg, tokenizer)
    return tokenizer, model, make_method(cfg, method_name, settings, model)


def run(cfg: DictConfig, out_dir: str | Path) -> dict[str, Any]:
    out_dir = Path(out_dir)
    method_name, settings = validate(cfg)  # every value checked before anything heavy
    if cfg.task.name in EVAL_TASKS:
        from sparsed.eval.runner import run_eval

        return run_eval(cfg, out_dir, method_name, settings)
    check_checkpoint(cfg)
    from sparsed.data.prompts import make_prompt
    from sparsed.data.ruler import prompt_ids

    tokenizer = load_run_tokenizer(cfg)
    p = cfg.prompt
    prompt = make_prompt(p.kind, tokenizer, length=p.length, seed=p.seed, gen_length=cfg.gen.gen_length,
                         haystack=p.haystack)
    # the exact rendering (chat template, answer prefix, special tokens) the prompt generator budgeted with
    ids = torch.tensor([prompt_ids(tokenizer, prompt.text, prompt.answer_prefix or "", cfg.model.chat_template)])
    canvas = ids.shape[1] + cfg.gen.gen_length
    warning = check_canvas_length(cfg, canvas)
    if warning:
        log.warning(warning)

    t0 = time.perf_counter()
    model = build_model(cfg, tokenizer)
    load_s = time.perf_counter() - t0
    device = model.device
    method = make_method(cfg, method_name, settings, model)
    log.info("model %s (%s, %s) on %s; prompt %d tokens; attention %s",
             cfg.model.name, model.args.arch, model.dtype, device, ids.shape[1], method_name)

    warm_s = None
    if cfg.run.warmup:
        t0 = time.perf_counter()
        sample(model, ids, cfg.gen, method, steps=warmup_steps(cfg.gen))
        warm_s = time.perf_counter() - t0
    repeats = int(cfg.task.get("repeats", 1)) if cfg.task.name == "latency" else 1
    totals = []
    for _ in range(repeats):
        reset_peak_memory(device)
        out = sample(model, ids, cfg.gen, method, show_progress=cfg.run.progress)
        totals.append(out.total_time)
    gen_ids = out.generated[0].tolist()
    answer = tokenizer.decode(gen_ids, skip_special_tokens=True).strip()
    report = method.report()
    schedule = _step_kinds(method, cfg.gen.steps)
    result = {
        "config": OmegaConf.to_container(cfg, resolve=True),
        "prompt": {"name": p.name, "kind": p.kind, "tokens": int(ids.shape[1]), "canvas_tokens": canvas,
                   "gold": list(prompt.answers), "question_tail": prompt.text[-300:]},
        "answer": answer,
        "score": answer_score(answer, list(prompt.answers)),
        "latency": {
            "total_s": round(out.total_time, 6),
            "repeats_total_s": [round(t, 6) for t in totals],
            "median_total_s": round(sorted(totals)[len(totals) // 2], 6),
            "per_step_s": [round(t, 6) for t in out.step_times],
            "mean_step_s": round(out.total_time / max(1, len(out.step_times)), 6),
            "dense_steps_mean_s": _mean([t for t, k in zip(out.step_times, schedule, strict=False) if k == "dense"]),
            "sparse_steps_mean_s": _mean([t for t, k in zip(out.step_times, schedule, strict=False) if k == "sparse"]),
            "warmup_s": None if warm_s is None else round(warm_s, 3),
            "model_load_s": round(load_s, 3),
        },
        "nfe": out.nfe,
        "memory": peak_memory(device),
        "attention": report,
        "warnings": [warning] if warning else [],
        "versions": versions(),
        "device": device_info(device),
        "model_init": cfg.model.init,
    }
    path = write_json_atomic(out_dir / "result.json", result)
    result["result_path"] = str(path)
    return result


def _mean(xs: list[float]) -> float | None:
    return round(sum(xs) / len(xs), 6) if xs else None


def _step_kinds(method: AttentionMethod, steps: int) -> list[str]:
    """Which steps ran dense and which sparse (for the per-phase latency split)."""
    schedule = getattr(method, "schedule", None)
    if schedule is None:
        return ["dense" if method.name == "dense" else "sparse"] * steps
    _, first_sparse = schedule(steps)
    return ["dense" if i < first_sparse else "sparse" for i in range(steps)]


def summary_lines(result: dict[str, Any]) -> list[str]:
    if "summary" in result:  # evaluation runs (task=ruler|gsm8k|humaneval|mmlu) bring their own
        return result["summary"]
    lat = result["latency"]
    score = result["score"]
    lines = [
        f"model      {result['config']['model']['name']} ({result['model_init']}) on {result['device']['name']}",
        f"attention  {result['attention']['method']}  density {result['attention']['density_mean']:.3f}",
        f"prompt     {result['prompt']['name']}: {result['prompt']['tokens']} tokens; gold {result['prompt']['gold']}",
        f"answer     {result['answer'][:200]!r}",
        f"score      {'n/a' if math.isnan(score) else f'{100 * score:.0f}'}",
        f"latency    {lat['total_s']:.3f} s total, {lat['mean_step_s'] * 1000:.1f} ms/step "
        + ("(no warm-up run)" if lat["warmup_s"] is None else f"(after a {lat['warmup_s']} s warm-up run)"),
        f"result     {result['result_path']}",
    ]
    if result["model_init"] == "random":
        lines.insert(0, "note       random-init weights: the answer is noise; use a trained checkpoint for real answers")
    return lines

"""Accuracy runs from Hydra: ``python run.py task=ruler prompt=4k`` / ``task=gsm8k`` / ``task=mmlu`` / ``task=humaneval``.

``run_eval`` checks the ``task`` node and the benchmark data, loads the model once, runs the benchmark
(RULER through the in-repo generator, the others through lm-eval) and writes ``result.json`` atomically:
per-task scores (0-100), their average and which tasks ran, the attention density over the whole
evaluation, timing, config, versions and device. ``result["summary"]`` holds the lines to print.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sparsed.config import RunChoices, check_method_schedule
from sparsed.config_errors import ConfigError
from sparsed.eval.settings import RULER_TASKS, EvalSettings, parse_settings, task_gen
from sparsed.results import device_info, versions, write_json_exclusive

log = logging.getLogger("sparsed")


def run_eval(cfg: DictConfig, out_dir: str | Path, choices: RunChoices) -> dict[str, Any]:
    from sparsed.build import check_runtime, prepare
    from sparsed.eval import distributed

    out_dir = Path(out_dir)
    s = parse_settings(cfg)
    _preflight(cfg, s, choices)  # every check and data load before the model
    check_runtime(cfg, choices)
    from sparsed.build import check_checkpoint
    from sparsed.memory import check_memory

    check_checkpoint(cfg)
    # RULER's canvas is the prompt length; a few-shot prompt of the other benchmarks is a few thousand tokens
    check_memory(cfg, int(cfg.prompt.length) if s.name == "ruler" else 2048 + int(s.gen_length or 0), s.batch_size)
    t0 = time.perf_counter()
    built = prepare(cfg, choices)
    tokenizer, model, method, kv = built.tokenizer, built.model, built.method, built.cache
    load_s = time.perf_counter() - t0
    cache_db = _cache_db(cfg, s, choices, out_dir)
    t1 = time.perf_counter()
    if s.name == "ruler":
        from sparsed.eval.ruler_eval import run_ruler

        out = run_ruler(cfg, s, tokenizer, model, method, out_dir, cache_db, cache=kv)
        if distributed.rank() != 0:
            return {"status": "ok", "rank": distributed.rank(), "summary": []}
        scores, details, not_run, stats = out["scores"], out["details"], out["not_run"], out["stats"]
    else:
        from sparsed.eval.lm_eval_tasks import run_lm_eval_task

        detail = run_lm_eval_task(cfg, s, tokenizer, model, method, out_dir, cache_db, cache=kv)
        if detail is None:
            return {"status": "ok", "rank": distributed.rank(), "summary": []}  # rank 0 writes the result
        stats = {k: detail.pop(k) for k in ("generation_s", "sequences", "nfe", "cached_forwards", "attention")}
        scores, details, not_run = {s.name: detail["score"]}, {s.name: detail}, {}
    eval_s = time.perf_counter() - t1
    ran = [t for t, v in scores.items() if v is not None]
    average = round(sum(scores[t] for t in ran) / len(ran), 2) if ran else None  # type: ignore[misc]
    from sparsed.eval.paper import paper_deviations

    result: dict[str, Any] = {
        "status": "ok",
        "task": s.name,
        "scores": scores,
        "average": average,
        "tasks_run": ran,
        "tasks_not_run": not_run,
        "complete": not not_run and bool(ran),
        "details": details,
        "attention": stats["attention"],
        "timing": {"model_load_s": round(load_s, 3), "eval_s": round(eval_s, 3), "generation_s": stats["generation_s"],
                   "sequences": stats["sequences"], "nfe": stats["nfe"], "cached_forwards": stats["cached_forwards"]},
        "settings": dataclasses.asdict(s),
        "cache": None if cache_db is None else str(cache_db) + "_rank0.db",
        "world_size": distributed.world_size(),
        "warnings": paper_deviations(s.name, cfg.prompt.length, choices.attention),
        "config": OmegaConf.to_container(cfg, resolve=True),
        "versions": versions(),
        "device": device_info(model.device),
        "model_init": cfg.model.init,
    }
    path = out_dir / "result.json"
    result["summary"] = eval_summary_lines(result, str(path))
    result["result_path"] = str(write_json_exclusive(path, result))
    return result


def check_eval_settings(cfg: DictConfig, s: EvalSettings, choices: RunChoices) -> None:
    """Every benchmark setting against the method, cache and sampler: config only, nothing read from disk."""
    from sparsed.cache.registry import CACHES
    from sparsed.config import check_combination

    no_kv = not CACHES[choices.cache.name].strategy_cls.uses_kv
    if s.name == "ruler":
        from sparsed.eval.ruler_eval import ruler_plan

        if cfg.prompt.length is None:
            raise ConfigError("task=ruler needs prompt.length (e.g. prompt=4k or prompt=8k)")
        for task, gen in ruler_plan(cfg, s).items():
            check_combination(choices.attention, choices.cache, cfg.model.arch, gen)
            if no_kv:
                check_method_schedule(choices.attention, gen.steps, f"RULER {task}")
        return
    gen = task_gen(cfg, s, s.gen_length)  # type: ignore[arg-type]
    check_combination(choices.attention, choices.cache, cfg.model.arch, gen)
    if no_kv:
        check_method_schedule(choices.attention, gen.steps, f"task={s.name}")


def _preflight(cfg: DictConfig, s: EvalSettings, choices: RunChoices) -> None:
    check_eval_settings(cfg, s, choices)
    if s.name == "ruler":
        return
    from sparsed.eval.benchdata import BenchmarkDataUnavailable
    from sparsed.eval.lm_eval_tasks import preflight

    try:
        preflight(s)
    except BenchmarkDataUnavailable as exc:
        raise ConfigError(str(exc)) from exc


def _cache_db(cfg: DictConfig, s: EvalSettings, choices: RunChoices, out_dir: Path) -> Path | None:
    """The request cache of this exact evaluation (lm-eval adds ``_rank0.db``).

    Requests are keyed by their text and generation arguments only, so the file name carries a hash of
    everything else that shapes an answer (model, sampler, attention, benchmark settings) and a cache is
    never reused across configurations. Sample count, batch size and cache location are left out: a
    rerun with a larger ``task.limit`` reuses the answers it already has.
    """
    if not s.cache:
        return None
    c = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(c, dict)
    task = {k: v for k, v in c["task"].items() if k not in ("limit", "batch_size", "cache", "cache_dir")}
    att, cache = choices.attention.name, choices.cache.name
    key = {"model": c["model"], "gen": c["gen"], "attention": c["attention"], "task": task,
           "method": c.get(att), "cache": c["cache"], "cache_settings": c.get(cache),
           "prompt": c["prompt"] if s.name == "ruler" else None}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    folder = Path(s.cache_dir).expanduser() if s.cache_dir else out_dir / "cache"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{s.name}_{digest}"


def _fmt(v: float | None) -> str:
    return "not run" if v is None else f"{v:.2f}"


def eval_summary_lines(result: dict[str, Any], path: str | None = None) -> list[str]:
    """What ``run.py`` prints after an evaluation."""
    cfg, s, att, tm = result["config"], result["settings"], result["attention"], result["timing"]
    lines = []
    if result["model_init"] == "random":
        lines.append("note       random-init weights: scores are noise; use a trained checkpoint for real numbers")
    lines.append(f"model      {cfg['model']['name']} ({result['model_init']}) on {result['device']['name']}")
    lines.append(f"attention  {att['method']}  density {att['density_mean']:.3f}")
    if result["task"] == "ruler":
        lines.append(f"task       RULER at {cfg['prompt']['length']} tokens, {s['limit'] or 500} samples per task, "
                     f"batch {s['batch_size']}")
        for t in s["tasks"] or RULER_TASKS:
            d = result["details"].get(t)
            extra = f"  (n={d['n']}, gen {d['gen']['gen_length']}, T {d['gen']['steps']})" if d else ""
            lines.append(f"  {t:<16} {_fmt(result['scores'].get(t))}{extra}")
    else:
        d = result["details"][result["task"]]
        g = d["gen"]
        block = f" / block {g['block_length']}" if g["block_length"] else ""
        lines.append(f"task       {result['task']} {d['num_fewshot']}-shot, gen {g['gen_length']} / T {g['steps']}{block}, "
                     f"n={d['n']}, chat template {'on' if d['chat_template'] else 'off'}")
        extra = ""
        if result["task"] == "gsm8k":
            extra = f"; strict-match {_fmt(d['strict-match'])}"
        elif result["task"] == "mmlu":
            extra = f"; subject average {_fmt(d['macro_average'])}"
        lines.append(f"score      {_fmt(d['score'])} {d['metric']}{extra}".rstrip())
    n_run, n_all = len(result["tasks_run"]), len(result["scores"])
    lines.append(f"average    {_fmt(result['average'])} over {n_run}/{n_all} tasks")
    for t, why in result["tasks_not_run"].items():
        lines.append(f"not run    {t}: {why[:160]}")
    for w in result["warnings"]:
        lines.append(f"warning    {w}")
    lines.append(f"time       {tm['eval_s']:.1f} s evaluation ({tm['generation_s']:.1f} s generating "
                 f"{tm['sequences']} sequences), model load {tm['model_load_s']:.1f} s")
    lines.append(f"result     {path or result.get('result_path')}")
    return lines

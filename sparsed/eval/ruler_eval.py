"""RULER with the in-repo generator (``sparsed.data.ruler``) and RULER's own scoring (``sparsed.eval.ruler_metrics``).

Not lm-eval's ``ruler`` tasks: their prompts are built with RULER's per-family answer budgets and a
tokenizer of their choice; here every prompt is budgeted with the evaluated model's tokenizer (chat
template included) so that prompt + generated tokens = ``prompt.length`` exactly. Each task generates
Table 3's length (groups of 32/64/128 tokens, T = length, LLaDA block = length unless overridden).

A task whose data is missing (QA sets offline, essays not installed) or that cannot fit the length is
reported under ``not_run`` with the reason; the average is taken over the tasks that ran and says so.
Answers are cached request by request (lm-eval's ``CachingLM``), so an interrupted run resumes.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from sparsed.eval.lm_eval_model import DensityMeter, SparsedLM
from sparsed.eval.settings import RULER_PAPER_NAMES, RULER_TASKS, EvalSettings, task_gen


def ruler_plan(cfg: DictConfig, s: EvalSettings) -> dict[str, Any]:
    """Task -> generation settings, checked before the model loads."""
    return {t: task_gen(cfg, s, s.gen_length or s.gen_lengths[t], where=f"RULER {t}") for t in (s.tasks or RULER_TASKS)}


def run_ruler(
    cfg: DictConfig, s: EvalSettings, tokenizer: Any, model: Any, method: Any, out_dir: Path, cache_db: Path | None,
    cache: Any = None,
) -> dict[str, Any]:
    """``scores`` (per task, None when not run), ``details`` (per task), ``not_run`` (task: reason), ``stats``."""
    from lm_eval.api.instance import Instance
    from lm_eval.api.model import CachingLM

    from sparsed.data.ruler import DataUnavailable, LengthTooSmall, context_stats, generate, render_sample
    from sparsed.eval.ruler_metrics import score

    logging.getLogger("lm_eval").setLevel(logging.ERROR)  # CachingLM logs every lookup at INFO
    length = int(cfg.prompt.length)
    chat = s.chat_template(cfg)
    plan = ruler_plan(cfg, s)
    first = next(iter(plan.values()))
    lm = SparsedLM.from_parts(model, tokenizer, method, first, cache=cache, batch_size=s.batch_size, seed=first.seed,
                              progress=cfg.run.progress)
    from sparsed.eval import distributed

    world, me = distributed.world_size(), distributed.rank()
    runner = lm if cache_db is None else CachingLM(lm, f"{cache_db}_rank{me}.db")
    if cache_db is not None:
        lm.use_token_store(f"{cache_db}_token_ids_rank{me}.db")
    total = DensityMeter()
    scores: dict[str, float | None] = {}
    details: dict[str, Any] = {}
    not_run: dict[str, str] = {}
    pred_dir = out_dir / "predictions"
    pred_dir.mkdir(parents=True, exist_ok=True)
    for task, gen in plan.items():
        t0 = time.perf_counter()
        try:
            samples = generate(
                task, length, tokenizer, s.limit or 500, seed=s.seed, gen_length=gen.gen_length, chat_template=chat,
                haystack=s.haystack if task.startswith(("niah", "vt")) else None, essay_path=s.essay_path,
                qa_path=s.qa_dir, cache_dir=s.data_cache_dir, fill=s.fill, cwe_words_path=s.cwe_words,
            )
        except (DataUnavailable, LengthTooSmall) as exc:
            scores[task] = None
            not_run[task] = f"{type(exc).__name__}: {exc}"
            continue
        lm.gen, lm.meter, lm.progress_desc = gen, DensityMeter(), f"RULER {task}"
        gen_s0 = lm.generation_s
        base = (lm.generation_s, lm.sequences, lm.nfe, lm.cached_forwards)
        requests = []
        for i, x in enumerate(samples):
            r = render_sample(tokenizer, x, chat)
            kwargs = {"until": [], "max_gen_toks": gen.gen_length, "steps": gen.steps, "block_length": gen.block_length,
                      "add_special_tokens": r.add_special_tokens}
            requests.append(Instance("generate_until", x, (r.text, kwargs), i, (task, i, 1)))
        # data parallel: every rank answers one request in `world`, rank 0 puts the answers back in order
        mine = requests[me::world]
        answers = runner.generate_until(mine) if mine else []
        counts = (lm.generation_s, lm.sequences, lm.nfe, lm.cached_forwards)
        parts = distributed.gather(([(r.idx, a, lm.ids_of(r.args)) for r, a in zip(mine, answers, strict=True)],
                                    lm.meter.layers, [c - b for c, b in zip(counts, base, strict=True)]))
        if parts is None:
            continue  # not rank 0: its share is with rank 0 now
        preds: list[str] = [""] * len(requests)
        ids: list[list[int] | None] = [None] * len(requests)
        for part in parts:
            for i, answer, row in part[0]:
                preds[i], ids[i] = answer, row
        if world > 1:
            meter = DensityMeter()
            for part in parts:
                meter._add(part[1])
            lm.meter = meter
            lm.generation_s, lm.sequences, lm.nfe, lm.cached_forwards = (
                b + sum(p[2][k] for p in parts) for k, b in enumerate(base))
        refs = [x["outputs"] for x in samples]
        scores[task] = score(samples[0]["metric"], preds, refs)
        with (pred_dir / f"{task}.jsonl").open("w", encoding="utf-8") as f:
            for x, p, row in zip(samples, preds, ids, strict=True):
                f.write(json.dumps({"index": x["index"], "prediction": p, "token_ids": row, "outputs": x["outputs"],
                                    "length": x["length"]}) + "\n")
        details[task] = {
            "score": scores[task], "metric": samples[0]["metric"], "paper_name": RULER_PAPER_NAMES[task], "n": len(samples),
            "prompt_tokens_mean": round(sum(x["length"] for x in samples) / len(samples), 1),
            "context": context_stats(samples),  # fill, mean / min / max prompt tokens, budget
            "notes": sorted({note for x in samples for note in x.get("notes", ())}),
            "gen": {"gen_length": gen.gen_length, "steps": gen.steps,
                    "block_length": gen.block_length},
            "haystack": samples[0].get("haystack"), "wall_s": round(time.perf_counter() - t0, 3),
            "generation_s": round(lm.generation_s - gen_s0, 3),
            "attention": lm.meter.report(getattr(method, "name", "dense")),
        }
        total.merge(lm.meter)
    lm.meter = total
    return {"scores": scores, "details": details, "not_run": not_run, "stats": lm.stats()}

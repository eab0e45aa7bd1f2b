"""GSM8K, MMLU and HumanEval through lm-eval (``simple_evaluate``) on an already loaded model.

The tasks are this repository's (``sparsed/eval/tasks``), loaded without lm-eval's own task tree (faster,
and nothing reaches for the hub unless a task's data must come from there). Requests go through
lm-eval's ``CachingLM``: every answer lands in an SQLite file as soon as it exists, so a rerun with the
same cache (same run directory, or ``task.cache_dir``) only computes what is missing.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from sparsed.eval.benchdata import gsm8k_source, mmlu_subjects
from sparsed.eval.lm_eval_model import SparsedLM
from sparsed.eval.settings import EvalSettings, task_gen
from sparsed.eval.tasks import TASK_NAMES, TASKS_DIR

log = logging.getLogger("sparsed")

# The number each benchmark reports (in Table 1): GSM8K's flexible extraction (instruct models seldom
# write "#### N"; strict-match is kept alongside), MMLU's exact match over all questions as lm-eval scores
# its generative MMLU (the lenient letter extraction alongside), HumanEval's pass@1.
MMLU_SUBSET = "sparsed_mmlu_subset"
PROMPTS_KEPT = 5  # documents per (sub)task whose full prompt goes into samples_<task>.jsonl
PRIMARY = {"gsm8k": ("exact_match", "flexible-extract"), "mmlu": ("exact_match", "none"), "humaneval": ("pass@1", "none")}
MMLU_LENIENT = "acc_lenient"
LM_EVAL_GSM8K_FEWSHOT = 5  # lm-eval's own gsm8k task; the paper (and task=gsm8k's default) uses 4


def task_metadata(s: EvalSettings) -> dict[str, Any]:
    """What the data loaders of ``sparsed/eval/tasks`` receive (lm-eval passes task metadata as kwargs)."""
    if s.name == "gsm8k":
        return {"data_dir": gsm8k_source(s.data_dir)}
    if s.name == "mmlu":
        return {"data_dir": s.data_dir}
    return {"timeout_s": s.timeout_s}


def preflight(s: EvalSettings) -> None:
    """Load the benchmark data before the model: a missing dataset fails in seconds, not after loading 8B."""
    from sparsed.eval import benchdata

    if s.name == "gsm8k":
        benchdata.gsm8k_dataset(**task_metadata(s))
    elif s.name == "mmlu":
        mmlu_subjects(s.data_dir)
    else:
        benchdata.humaneval_dataset(**task_metadata(s))


def run_lm_eval_task(
    cfg: DictConfig, s: EvalSettings, tokenizer: Any, model: Any, method: Any, out_dir: Path, cache_db: Path | None,
    cache: Any = None,
) -> dict[str, Any]:
    import lm_eval
    from lm_eval.tasks import TaskManager

    logging.getLogger("lm_eval").setLevel(logging.ERROR)  # its INFO/WARNING lines repeat what result.json says
    gen = task_gen(cfg, s, s.gen_length)  # type: ignore[arg-type]
    lm = SparsedLM.from_parts(model, tokenizer, method, gen, cache=cache, batch_size=s.batch_size, mc_num=s.mc_num,
                              mc_batch_size=s.mc_batch_size, seed=gen.seed, progress=cfg.run.progress)
    if cache_db is not None:
        lm.use_token_store(f"{cache_db}_token_ids_rank{lm.rank}.db")
    task, extra_paths = _task_spec(s, out_dir)
    tm = TaskManager(include_path=[TASKS_DIR, *extra_paths], include_defaults=False, metadata=task_metadata(s))
    chat = s.chat_template(cfg) and bool(getattr(tokenizer, "chat_template", None))  # a base tokenizer has none
    t0 = time.perf_counter()
    res = lm_eval.simple_evaluate(
        model=lm, tasks=[task], num_fewshot=s.num_fewshot if s.name != "humaneval" else None,
        limit=s.limit, use_cache=None if cache_db is None else str(cache_db), task_manager=tm,
        apply_chat_template=chat, fewshot_as_multiturn=s.fewshot_as_multiturn and chat,
        fewshot_random_seed=s.fewshot_seed, log_samples=True, bootstrap_iters=0,
        confirm_run_unsafe_code=s.name == "humaneval",  # task=humaneval is the request to execute code
    )
    wall = time.perf_counter() - t0
    lm.merge_ranks()
    if res is None:  # not rank 0 of a data-parallel run: lm-eval gathered this rank's samples to rank 0
        return None
    detail = _scores(s.name, task, res)
    detail["samples_file"] = str(_write_samples(out_dir, s.name, res.get("samples", {}), lm))
    detail["gen"] = {"gen_length": gen.gen_length, "steps": gen.steps,
                     "block_length": gen.block_length,  # null: a sampler without blocks (Dream's released one)
                     "temperature": gen.temperature, "top_p": gen.top_p}
    detail["num_fewshot"] = s.num_fewshot if s.name != "humaneval" else 0
    if s.name == "gsm8k" and s.num_fewshot != LM_EVAL_GSM8K_FEWSHOT:
        detail["num_fewshot_note"] = (
            f"{s.num_fewshot}-shot (the paper's is 4); lm-eval's gsm8k task is {LM_EVAL_GSM8K_FEWSHOT}-shot, "
            "so its published numbers are not strictly comparable"
        )
    detail["chat_template"] = chat
    detail["wall_s"] = round(wall, 3)
    detail |= lm.stats()
    return detail


def _task_spec(s: EvalSettings, out_dir: Path) -> tuple[str, list[Path]]:
    """(task name, extra include paths): for MMLU data without all 57 subjects, a group of those present.

    The subset is a small YAML in the run directory that includes ``mmlu.yaml`` and replaces its subtask
    list (lm-eval builds inline groups correctly only from indexed YAML files, not from dicts).
    """
    if s.name != "mmlu":
        return TASK_NAMES[s.name], []
    import yaml
    from lm_eval.tasks._yaml_loader import load_yaml

    group = load_yaml(TASKS_DIR / "mmlu.yaml", resolve_func=False)
    present = set(mmlu_subjects(s.data_dir))
    subtasks = [t for t in group["task"] if t["dataset_kwargs"]["subject"] in present]
    if len(subtasks) == len(group["task"]):
        return TASK_NAMES[s.name], []
    log.warning("MMLU data has %d of %d subjects; evaluating those", len(subtasks), len(group["task"]))
    folder = out_dir / "lm_eval_tasks"
    folder.mkdir(parents=True, exist_ok=True)
    subset = {"include": str(TASKS_DIR / "mmlu.yaml"), "group": MMLU_SUBSET, "task": subtasks}
    (folder / "mmlu_subset.yaml").write_text(yaml.safe_dump(subset, sort_keys=False))
    return MMLU_SUBSET, [folder]


def _pct(v: Any) -> float | None:
    if v is None or (isinstance(v, float) and math.isnan(v)) or isinstance(v, str):
        return None
    return round(100 * float(v), 2)


def _scores(name: str, task: str, res: dict[str, Any]) -> dict[str, Any]:
    results, n = res["results"], res.get("n-samples", {})
    metric, filt = PRIMARY[name]
    if name == "mmlu":
        strict = _mmlu_scores(task, results, n, f"{metric},{filt}")
        lenient = _mmlu_scores(task, results, n, f"{MMLU_LENIENT},none")
        return {"score": strict["score"], "metric": "exact_match (lm-eval's generative MMLU, all questions)",
                "macro_average": strict["macro_average"], "n": strict["n"], "per_subject": strict["per_subject"],
                MMLU_LENIENT: lenient}
    r = results[task]
    label = metric if filt == "none" else f"{metric} ({filt})"
    out: dict[str, Any] = {"score": _pct(r.get(f"{metric},{filt}")), "metric": label,
                           "n": (n.get(task) or {}).get("effective")}
    if name == "gsm8k":
        out["strict-match"] = _pct(r.get("exact_match,strict-match"))
        out["flexible-extract"] = _pct(r.get("exact_match,flexible-extract"))
    return out


def _mmlu_scores(task: str, results: dict[str, Any], n: dict[str, Any], key: str) -> dict[str, Any]:
    """One MMLU metric over all questions (subjects weighted by size, as lm-eval's group), its macro
    average and per-subject values."""
    subjects = {k.split("::")[-1]: v for k, v in results.items() if k != task}
    sizes = {k.split("::")[-1]: v.get("effective") for k, v in n.items()}
    per_subject = {k: _pct(v.get(key)) for k, v in sorted(subjects.items())}
    total = sum(sizes.get(k) or 0 for k in per_subject)
    micro = sum((per_subject[k] or 0.0) * (sizes.get(k) or 0) for k in per_subject) / total if total else None
    macro = sum(v or 0.0 for v in per_subject.values()) / len(per_subject) if per_subject else None
    return {"score": None if micro is None else round(micro, 2), "macro_average": None if macro is None else round(macro, 2),
            "n": total, "per_subject": per_subject}


def _write_samples(out_dir: Path, name: str, samples: dict[str, list[dict[str, Any]]], lm: Any = None) -> Path:  # noqa: ANN401
    """Every raw answer, extracted answer and per-sample metric (one JSON line each); the full prompt for the
    first few documents of each (sub)task only, since few-shot prompts would make MMLU's file ~40 MB."""
    path = out_dir / f"samples_{name}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    keep = ("doc_id", "target", "arguments", "resps", "filtered_resps", "filter")
    with path.open("w", encoding="utf-8") as f:
        for task, rows in samples.items():
            # a data-parallel run gathers rank by rank; document order makes the file a single process's
            for row in sorted(rows, key=lambda r: (r.get("doc_id") or 0, str(r.get("filter")))):
                rec = {"task": task.split("::")[-1], **{k: row.get(k) for k in keep if k in row}}
                if lm is not None and lm.world_size > 1 and rec.get("resps"):
                    # lm-eval evens out the ranks by running a rank's last request again and appending those
                    # answers to it; this repository's tasks ask one answer per request (repeats 1)
                    rec["resps"] = [r[:1] for r in rec["resps"]]
                if lm is not None and row.get("arguments"):
                    # the generated tokens of each request, before the end-token cut and the stop strings
                    rec["resp_token_ids"] = [lm.ids_of(tuple(a)) for a in row["arguments"]]
                if (row.get("doc_id") or 0) >= PROMPTS_KEPT:
                    rec.pop("arguments", None)
                rec |= {k: v for k, v in row.items() if k in ("acc", "pass@1", "exact_match", MMLU_LENIENT)}
                rec["doc"] = {k: v for k, v in (row.get("doc") or {}).items() if k not in ("test", "canonical_solution")}
                f.write(json.dumps(rec, default=str) + "\n")
    return path

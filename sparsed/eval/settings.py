"""The ``task`` node of an evaluation run, checked key by key before anything is loaded.

``cfg.task`` is a free dict in the run schema (each task has its own keys), so this module is where
its keys are typed: unknown keys, wrong types and impossible generation settings raise ``ConfigError``
with one line naming the setting (``task.limit=-1 must be a positive integer or null``).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sparsed.config import GenConfig
from sparsed.config_errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
LM_EVAL_TASKS = ("gsm8k", "mmlu", "humaneval")

# RULER's 13 tasks (generator names) in the paper's order, their lm-eval names, and Table 3's groups:
# A = 32 generated tokens, B = 64, C = 128 (T = l, LLaDA block = l).
RULER_TASKS = (
    "niah_single_1", "niah_single_2", "niah_single_3", "niah_multikey_1", "niah_multikey_2", "niah_multikey_3",
    "niah_multivalue", "niah_multiquery", "vt", "cwe", "fwe", "qa_1", "qa_2",
)  # fmt: skip
RULER_PAPER_NAMES = {t: t for t in RULER_TASKS[:8]} | {
    "vt": "ruler_vt", "cwe": "ruler_cwe", "fwe": "ruler_fwe", "qa_1": "ruler_qa_squad", "qa_2": "ruler_qa_hotpot",
}  # fmt: skip
RULER_GEN_LENGTHS = {
    **dict.fromkeys(("niah_single_1", "niah_single_2", "niah_multikey_1", "niah_multikey_2", "vt"), 32),
    **dict.fromkeys(("niah_single_3", "niah_multikey_3", "niah_multiquery", "niah_multivalue", "fwe"), 64),
    **dict.fromkeys(("cwe", "qa_1", "qa_2"), 128),
}
GEN_OVERRIDE_KEYS = ("temperature", "top_p", "top_k", "alg", "alg_temp", "remasking", "cfg_scale", "seed")


@dataclass
class EvalSettings:
    """Settings shared by every evaluation task (``task.*``)."""

    name: str
    limit: int | None = None  # samples per task (per subject for MMLU); null = all
    batch_size: int = 1
    gen_length: int | None = None
    steps: int | None = None  # null = gen_length (T = l, as in every row of Table 3)
    block_length: int | None = None  # LLaDA only; null = gen_length
    apply_chat_template: bool | None = None  # null = model.chat_template
    cache: bool = True  # request-level cache: an interrupted run resumes where it stopped
    cache_dir: str | None = None  # null = <run dir>/cache
    gen_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # per architecture, keys of gen.*
    # lm-eval tasks
    num_fewshot: int = 0
    fewshot_as_multiturn: bool = True
    fewshot_seed: int = 1234  # lm-eval's default few-shot sampling seed
    data_dir: str | None = None
    mc_num: int = 128  # Monte-Carlo samples per log-likelihood request (LLaDA's evaluation default)
    mc_batch_size: int = 32
    timeout_s: float = 5.0  # HumanEval: wall-clock limit of one program
    # RULER
    tasks: list[str] | None = None  # null = all 13
    gen_lengths: dict[str, int] = field(default_factory=dict)
    seed: int = 0  # RULER sample seed
    qa_dir: str | None = None
    essay_path: str | None = None
    haystack: str | None = None
    data_cache_dir: str | None = None
    fill: str = "official"  # RULER's own sample sizing, or "tight" (sparsed.data.ruler.fill)
    cwe_words: str | None = None  # RULER's english_words.json, for cwe past ~8k words

    def chat_template(self, cfg: DictConfig) -> bool:
        return bool(cfg.model.chat_template if self.apply_chat_template is None else self.apply_chat_template)


KEYS = {
    "common": ("name", "limit", "batch_size", "gen_length", "steps", "block_length", "apply_chat_template", "cache",
               "cache_dir", "gen_overrides"),
    "lm_eval": ("num_fewshot", "fewshot_as_multiturn", "fewshot_seed", "mc_num", "mc_batch_size"),
    "gsm8k": ("data_dir",),
    "mmlu": ("data_dir",),
    "humaneval": ("timeout_s",),
    "ruler": ("tasks", "gen_lengths", "seed", "qa_dir", "essay_path", "haystack", "data_cache_dir", "fill", "cwe_words"),
}  # fmt: skip


def allowed_keys(task: str) -> tuple[str, ...]:
    extra = KEYS["lm_eval"] if task in LM_EVAL_TASKS else ()
    return KEYS["common"] + extra + KEYS[task]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _pos_int(key: str, v: Any, nullable: bool = False) -> int | None:
    if v is None and nullable:
        return None
    if not _is_int(v) or v <= 0:
        raise ConfigError(f"task.{key}={v!r} must be a positive integer" + (" or null" if nullable else ""))
    return int(v)


def _bool(key: str, v: Any, nullable: bool = False) -> bool | None:
    if v is None and nullable:
        return None
    if not isinstance(v, bool):
        raise ConfigError(f"task.{key}={v!r} must be true or false" + (" (or null)" if nullable else ""))
    return v


def _str(key: str, v: Any) -> str | None:
    if v is not None and not isinstance(v, str):
        raise ConfigError(f"task.{key}={v!r} must be a path (string) or null")
    return v


def parse_settings(cfg: DictConfig) -> EvalSettings:
    """Typed, checked ``task`` settings of an evaluation run (ConfigError on any bad value)."""
    raw = OmegaConf.to_container(cfg.task, resolve=True)
    assert isinstance(raw, dict)
    name = raw["name"]
    allowed = allowed_keys(name)
    for key in raw:
        if key not in allowed:
            raise ConfigError(f"task.{key} is not a setting of task={name}; its settings: {', '.join(allowed)}")
    s = EvalSettings(name=name)
    s.limit = _pos_int("limit", raw.get("limit"), nullable=True)
    s.batch_size = _pos_int("batch_size", raw.get("batch_size", 1))  # type: ignore[assignment]
    for key in ("gen_length", "steps", "block_length"):
        setattr(s, key, _pos_int(key, raw.get(key), nullable=True))
    s.apply_chat_template = _bool("apply_chat_template", raw.get("apply_chat_template"), nullable=True)
    s.cache = bool(_bool("cache", raw.get("cache", True)))
    s.cache_dir = _str("cache_dir", raw.get("cache_dir"))
    s.gen_overrides = _gen_overrides(raw.get("gen_overrides") or {})
    if name in LM_EVAL_TASKS:
        _parse_lm_eval(s, raw)
    else:
        _parse_ruler(s, raw)
    return s


def _gen_overrides(v: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(v, dict):
        raise ConfigError(f"task.gen_overrides={v!r} must map an architecture (llada, dream) to gen.* settings")
    out: dict[str, dict[str, Any]] = {}
    for arch, values in v.items():
        from sparsed.models.registry import FAMILIES

        if arch not in FAMILIES:
            raise ConfigError(f"task.gen_overrides.{arch}: the model families are {', '.join(FAMILIES)}")
        values = values or {}
        for key in values:
            if key not in GEN_OVERRIDE_KEYS:
                raise ConfigError(f"task.gen_overrides.{arch}.{key} is not allowed; choose among: {', '.join(GEN_OVERRIDE_KEYS)}")
        out[arch] = dict(values)
    return out


def _parse_lm_eval(s: EvalSettings, raw: dict[str, Any]) -> None:
    if s.gen_length is None:
        raise ConfigError(f"task.gen_length must be set for task={s.name}")
    n = raw.get("num_fewshot", 0)
    if not _is_int(n) or n < 0:
        raise ConfigError(f"task.num_fewshot={n!r} must be a non-negative integer")
    s.num_fewshot = n
    s.fewshot_as_multiturn = bool(_bool("fewshot_as_multiturn", raw.get("fewshot_as_multiturn", True)))
    seed = raw.get("fewshot_seed", 1234)
    if not _is_int(seed) or seed < 0:
        raise ConfigError(f"task.fewshot_seed={seed!r} must be a non-negative integer")
    s.fewshot_seed = seed
    s.mc_num = _pos_int("mc_num", raw.get("mc_num", 128))  # type: ignore[assignment]
    s.mc_batch_size = _pos_int("mc_batch_size", raw.get("mc_batch_size", 32))  # type: ignore[assignment]
    if s.name in ("gsm8k", "mmlu"):
        s.data_dir = _str("data_dir", raw.get("data_dir"))
        if s.data_dir is not None and not resolve_path(s.data_dir).is_dir():
            raise ConfigError(f"task.data_dir={s.data_dir!r} is not a directory")
    if s.name == "humaneval":
        t = raw.get("timeout_s", 5.0)
        if isinstance(t, bool) or not isinstance(t, int | float) or t <= 0:
            raise ConfigError(f"task.timeout_s={t!r} must be a positive number of seconds")
        s.timeout_s = float(t)


def _parse_ruler(s: EvalSettings, raw: dict[str, Any]) -> None:
    tasks = raw.get("tasks")
    if tasks is not None:
        if isinstance(tasks, str):
            tasks = [tasks]
        if not isinstance(tasks, list) or not tasks:
            raise ConfigError(f"task.tasks={tasks!r} must be a non-empty list of RULER tasks or null (all 13)")
        for t in tasks:
            if t not in RULER_TASKS:
                raise ConfigError(f"task.tasks: unknown RULER task {t!r}; choose among: {', '.join(RULER_TASKS)}")
        tasks = list(dict.fromkeys(tasks))
    s.tasks = tasks
    lengths = raw.get("gen_lengths") or {}
    if not isinstance(lengths, dict):
        raise ConfigError(f"task.gen_lengths={lengths!r} must map RULER tasks to generation lengths")
    for t, n in lengths.items():
        if t not in RULER_TASKS:
            raise ConfigError(f"task.gen_lengths.{t}: unknown RULER task; choose among: {', '.join(RULER_TASKS)}")
        _pos_int(f"gen_lengths.{t}", n)
    s.gen_lengths = {**RULER_GEN_LENGTHS, **lengths}
    seed = raw.get("seed", 0)
    if not _is_int(seed) or seed < 0:
        raise ConfigError(f"task.seed={seed!r} must be a non-negative integer")
    s.seed = seed
    for key in ("qa_dir", "essay_path", "data_cache_dir", "cwe_words"):
        setattr(s, key, _str(key, raw.get(key)))
    fill = raw.get("fill", "official")
    if fill not in ("official", "tight"):
        raise ConfigError(f"task.fill={fill!r} is not allowed; choose one of: official (RULER's sizing), tight")
    s.fill = fill
    haystack = raw.get("haystack")
    if haystack not in (None, "essay", "noise", "needle"):
        raise ConfigError(f"task.haystack={haystack!r} is not allowed; choose one of: null (each task's), essay, noise, needle")
    s.haystack = haystack


def resolve_path(path: str) -> Path:
    """A relative path is taken from the working directory when it exists there, else from the repository root."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    return REPO_ROOT / p


def default_gsm8k_dir() -> Path | None:
    """$SPARSED_GSM8K_DIR, else ../shared/data/gsm8k next to the repository when it exists (else the hub)."""
    env = os.environ.get("SPARSED_GSM8K_DIR")
    if env:
        return resolve_path(env)
    local = REPO_ROOT.parent / "shared" / "data" / "gsm8k"
    return local if (local / "test.jsonl").is_file() else None


def task_gen(cfg: DictConfig, s: EvalSettings, gen_length: int, where: str = "task") -> GenConfig:
    """The generation settings of one benchmark: ``gen.*`` with the task's length, steps, block and overrides.

    T defaults to the generation length and the LLaDA block to the task's block (or the whole length),
    as in Table 3; LLaDA's divisibility rules are checked here so that a bad combination fails before
    the model is loaded.
    """
    from sparsed.models.registry import FAMILIES

    base = OmegaConf.to_container(cfg.gen, resolve=True)
    assert isinstance(base, dict)
    gen = GenConfig(**base)
    arch = cfg.model.arch
    steps = s.steps or gen_length
    # a family whose sampler has no blocks by default (gen.block_length=null: Dream's) keeps none
    block = None if gen.block_length is None else (s.block_length or gen_length)
    gen = dataclasses.replace(gen, gen_length=gen_length, steps=steps, block_length=block,
                              **s.gen_overrides.get(arch, {}))
    if block is not None:
        if gen_length % block:
            raise ConfigError(f"{where}: gen length {gen_length} is not divisible by task.block_length={block}")
        if steps % (gen_length // block):
            raise ConfigError(
                f"{where}: task.steps={steps} is not divisible by the number of blocks ({gen_length // block})"
            )
    try:
        FAMILIES[arch].check_gen(gen)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    return gen


"""Typed schemas of a run (registered in Hydra's ConfigStore) and the checks made before any heavy work.

``configs/config.yaml`` starts from ``run_schema`` (below), so every key a YAML file or an override sets
is type-checked by OmegaConf; ``validate`` then checks values and combinations, and raises
``ConfigError`` with one line that names the setting and what it may be.

The schema has one node per attention method and per cache strategy with settings, named after it
(``sparsed.skip``, ``sliding_window.ws``, ``dkv_greedy.window``), built from the registries: adding a
method adds its node without touching this file. ``attention.name`` and ``cache.name`` choose which
of them runs.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, make_dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from sparsed.analysis.record_settings import RecordSettings
from sparsed.attention.base import MethodSettings
from sparsed.attention.registry import METHODS, parse_settings
from sparsed.cache.base import CacheSettings
from sparsed.cache.registry import CACHES, parse_cache_settings
from sparsed.config_errors import ConfigError, check_choice
from sparsed.launch import rundir  # noqa: F401 - registers ${sparsed_dirname:} for job folders
from sparsed.models.registry import FAMILIES

INITS = ("pretrained", "random")
PROMPT_KINDS = ("short", "niah")
GENERATION_TASKS = ("generate", "latency")
EVAL_TASKS = ("ruler", "gsm8k", "humaneval", "mmlu")
TASKS = GENERATION_TASKS + EVAL_TASKS
GENERATION_TASK_KEYS = {"generate": ("name",), "latency": ("name", "repeats", "profile")}


@dataclass
class ModelConfig:
    name: str = "llada_small_random"
    arch: str = "llada"  # the model family (see sparsed.sampling.families)
    path: str | None = None  # checkpoint folder or hub id
    init: str = "pretrained"  # pretrained | random (architecture below, no weights)
    # config.json keys of the architecture, used for init=random (a checkpoint's own config wins otherwise)
    architecture: dict[str, Any] = field(default_factory=dict)
    tokenizer: str | None = None  # tokenizer folder; default: model.path, else the project's tokenizer
    chat_template: bool = True
    dtype: str = "auto"  # auto | bf16 | fp32 | fp16
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    max_length: int | None = None  # warn (or fail, see strict_length) when the canvas is longer
    strict_length: bool = False
    seed: int = 0  # random-init seed


@dataclass
class GenConfig:
    steps: int = 128
    gen_length: int = 128
    block_length: int | None = 32  # semi-AR block (LLaDA; Dream: null = one block, the original sampler)
    temperature: float = 0.0
    remasking: str = "low_confidence"  # LLaDA: low_confidence | random | random_fixed
    cfg_scale: float = 0.0  # LLaDA
    threshold: float | None = None  # parallel decoding (Fast-dLLM): commit every token above it, at least one
    factor: float | None = None  # LLaDA: Fast-dLLM's factor rule instead of a fixed threshold
    alg: str = "maskgit_plus"  # Dream
    top_p: float | None = None
    top_k: int | None = None
    alg_temp: float | None = None
    seed: int = 0


@dataclass
class PromptConfig:
    name: str = "2k"
    kind: str = "niah"  # short | niah
    length: int | None = 2048  # token budget of prompt + generation (chat template included)
    haystack: str = "essay"  # essay | noise
    seed: int = 0


@dataclass
class RunSettings:
    warmup: bool = True  # one untimed generation first (compilation, allocator, autotuning)
    progress: bool = True
    wandb: bool = True  # offline without an API key (sparsed.tracking)
    wandb_project: str = "sparsed"


@dataclass
class AttentionChoice:
    name: str = "sparsed"  # the method; its settings are the node named after it


@dataclass
class CacheChoice:
    name: str = "none"  # the KV-cache strategy; its settings (if any) are the node named after it


_BASE_FIELDS = ("model", "gen", "prompt", "attention", "cache", "task", "run", "record")


def _run_config_class() -> type:
    base: list[tuple[str, Any, Any]] = [
        ("model", ModelConfig, field(default_factory=ModelConfig)),
        ("gen", GenConfig, field(default_factory=GenConfig)),
        ("prompt", PromptConfig, field(default_factory=PromptConfig)),
        ("attention", AttentionChoice, field(default_factory=AttentionChoice)),
        ("cache", CacheChoice, field(default_factory=CacheChoice)),
        ("task", dict[str, Any], field(default_factory=lambda: {"name": "generate"})),
        ("run", RunSettings, field(default_factory=RunSettings)),
        ("record", RecordSettings, field(default_factory=RecordSettings)),  # the attention recorder
    ]
    nodes: list[tuple[str, Any, Any]] = []
    for name, spec in METHODS.items():
        nodes.append((name, spec.settings_cls, field(default_factory=spec.settings_cls)))
    for name, cspec in CACHES.items():
        if cspec.has_settings:
            if name in METHODS:
                raise RuntimeError(f"cache strategy {name!r} has the name of an attention method")
            nodes.append((name, cspec.settings_cls, field(default_factory=cspec.settings_cls)))
    for name, _, _ in nodes:
        if name in _BASE_FIELDS:
            raise RuntimeError(f"method or cache {name!r} collides with the run config node of that name")
    return make_dataclass("RunConfig", base + nodes)


RunConfig = _run_config_class()


def register_schemas() -> None:
    ConfigStore.instance().store(name="run_schema", node=RunConfig)


@dataclass(frozen=True)
class Choice:
    """A chosen method or cache strategy with its typed, validated settings."""

    name: str
    settings: Any


@dataclass(frozen=True)
class RunChoices:
    attention: Choice
    cache: Choice


def _node(cfg: DictConfig | dict, key: str) -> dict[str, Any]:
    node = cfg.get(key) if isinstance(cfg, dict) else cfg.get(key, None)
    if node is None:
        return {}
    if isinstance(node, DictConfig):
        return dict(OmegaConf.to_container(node, resolve=True))  # type: ignore[arg-type]
    return dict(node)


def attention_choice(cfg: DictConfig | dict) -> Choice:
    """(method name, typed settings) from ``attention.name`` and the node named after the method."""
    att = _node(cfg, "attention")
    name = att.pop("name", None)
    if name is None:
        raise ConfigError(f"attention.name is missing; choose one of: {', '.join(METHODS)}")
    if att:
        key = next(iter(att))
        raise ConfigError(f"attention.{key}: a method's settings live under its own node (e.g. {name}.{key}=...)")
    if name not in METHODS:
        raise ConfigError(f"attention.name={name!r} is not a known method; choose one of: {', '.join(METHODS)}")
    return Choice(name, parse_settings(name, _node(cfg, name)))


def cache_choice(cfg: DictConfig | dict) -> Choice:
    c = _node(cfg, "cache")
    name = c.pop("name", "none")
    if c:
        raise ConfigError(f"cache.{next(iter(c))}: a cache strategy's settings live under its own node ({name}.*)")
    if name not in CACHES:
        raise ConfigError(f"cache.name={name!r} is not a known cache strategy; choose one of: {', '.join(CACHES)}")
    values = _node(cfg, name) if CACHES[name].has_settings else {}
    return Choice(name, parse_cache_settings(name, values))


def check_method_schedule(choice: Choice, total_steps: int, where: str) -> None:
    settings: MethodSettings = choice.settings
    settings.check_schedule(total_steps, where)


def check_combination(attention: Choice, cache: Choice, arch: str, gen: Any) -> None:
    """Attention method x cache strategy x model family x sampler settings, before anything loads."""
    method = METHODS[attention.name].method_cls
    strategy = CACHES[cache.name].strategy_cls
    if strategy.uses_kv and not method.supports_layout:
        raise ConfigError(
            f"attention={attention.name} does not run on a KV cache (cache={cache.name}); "
            f"methods that do: {', '.join(n for n, s in METHODS.items() if s.method_cls.supports_layout)}"
        )
    if getattr(method, "needs_static_cache", False) and not strategy.static_within_block:
        fits = ", ".join(n for n, c in CACHES.items() if c.strategy_cls.static_within_block)
        raise ConfigError(f"attention={attention.name} sparsifies a block's cached keys, so it needs a cache that keeps "
                          f"them fixed within a block: cache={fits} (cache={cache.name} does not)")
    if FAMILIES[arch].block_causal and not method.supports_layout:
        raise ConfigError(
            f"attention={attention.name} does not serve block-causal models (model.arch={arch}); "
            f"methods that do: {', '.join(n for n, s in METHODS.items() if s.method_cls.supports_layout)}"
        )
    families = strategy.families
    if families is not None and arch not in families:
        raise ConfigError(f"cache={cache.name} is defined for model families {', '.join(families)} (model.arch={arch})")
    cache_settings: CacheSettings = cache.settings
    checker = getattr(cache_settings, "check_gen", None)
    if checker is not None:
        checker(gen, arch)


def check_known_keys(cfg: DictConfig) -> None:
    """A key no schema has (``+foo=1``, ``+model.foo=1``) is an error, not silently ignored."""
    def walk(node: Any, cls: Any, prefix: str) -> None:  # noqa: ANN401
        if not dataclasses.is_dataclass(cls) or not isinstance(node, DictConfig):
            return
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for key in node.keys():
            if prefix == "" and key == "hydra":
                continue
            if key not in fields:
                where = prefix.rstrip(".") or "the run config"
                raise ConfigError(f"{prefix}{key} is not a setting of {where}; its settings: {', '.join(fields)}")
            f = fields[str(key)]
            if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                walk(node[key], type(f.default_factory()), f"{prefix}{key}.")  # type: ignore[misc]

    walk(cfg, RunConfig, "")


def _check_int(setting: str, value: Any, minimum: int, nullable: bool = False) -> None:  # noqa: ANN401
    if value is None and nullable:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{setting}={value!r} must be an integer >= {minimum}" + (" or null" if nullable else ""))


def validate(cfg: DictConfig) -> RunChoices:
    """Check every value before anything is loaded; returns the chosen attention method and cache."""
    check_known_keys(cfg)
    m, g, p = cfg.model, cfg.gen, cfg.prompt
    check_choice("model.arch", m.arch, FAMILIES)
    check_choice("model.init", m.init, INITS)
    check_choice("model.dtype", m.dtype, ("auto", "bf16", "fp32", "fp16", "bfloat16", "float32", "float16"))
    check_choice("task.name", cfg.task.get("name"), TASKS)
    if cfg.task.name in GENERATION_TASK_KEYS:
        allowed = GENERATION_TASK_KEYS[cfg.task.name]
        for key in cfg.task:
            if key not in allowed:
                raise ConfigError(f"task.{key} is not a setting of task={cfg.task.name}; its settings: {', '.join(allowed)}")
        if cfg.task.name == "latency":
            _check_int("task.repeats", cfg.task.get("repeats", 1), 1)
            if not isinstance(cfg.task.get("profile", True), bool):
                raise ConfigError(f"task.profile={cfg.task.profile!r} must be true or false")
    _check_int("model.max_length", m.max_length, 1, nullable=True)
    _check_int("prompt.length", p.length, 1, nullable=True)
    if p.kind == "short" and p.length is not None and cfg.task.name in GENERATION_TASKS:
        raise ConfigError(f"prompt.length={p.length} is not used by prompt.kind=short; choose a long prompt "
                          "(prompt=1k ... 64k) or leave prompt.length=null")
    if g.alg_temp is not None and g.alg_temp < 0:
        raise ConfigError(f"gen.alg_temp={g.alg_temp} must be >= 0 or null")
    for key in ("model.seed", "gen.seed", "prompt.seed"):
        _check_int(key, OmegaConf.select(cfg, key), 0)
    if m.init == "pretrained" and not m.path:
        raise ConfigError("model.path is not set; give a checkpoint folder or hub id, or use model.init=random")
    if m.init == "random" and not m.architecture and not m.path:
        raise ConfigError("model.init=random needs model.architecture (config.json keys) or a model.path to read them from")
    if m.device != "auto" and not (m.device == "cpu" or m.device.startswith("cuda")):
        raise ConfigError(f"model.device={m.device!r} is not allowed; choose one of: auto, cpu, cuda, cuda:N")
    FAMILIES[m.arch].check_gen(g)
    check_choice("prompt.kind", p.kind, PROMPT_KINDS)
    check_choice("prompt.haystack", p.haystack, ("essay", "noise"))
    if p.kind == "niah" and (p.length is None or p.length <= g.gen_length + 64):
        raise ConfigError(f"prompt.length={p.length} must exceed gen.gen_length={g.gen_length} by at least 64 tokens")
    check_record(cfg)
    # every method's and cache's node is checked, the chosen one's or not: a bad value is never silently kept
    for name in METHODS:
        parse_settings(name, _node(cfg, name))
    for name, spec in CACHES.items():
        if spec.has_settings:
            parse_cache_settings(name, _node(cfg, name))
    choices = RunChoices(attention_choice(cfg), cache_choice(cfg))
    check_combination(choices.attention, choices.cache, m.arch, g)
    if CACHES[choices.cache.name].strategy_cls.uses_kv is False:
        check_method_schedule(choices.attention, g.steps, "gen.steps")
    return choices


def record_settings(cfg: DictConfig | dict) -> RecordSettings:
    """The typed ``record.*`` node (defaults when the config has none)."""
    return RecordSettings(**_node(cfg, "record"))


def check_record(cfg: DictConfig) -> None:
    settings = record_settings(cfg)
    settings.validate()
    if settings.attention and cfg.task.name not in GENERATION_TASKS:
        raise ConfigError(f"record.attention=true records generation runs (task={'|'.join(GENERATION_TASKS)}), "
                          f"not task={cfg.task.name}")


def check_canvas_length(cfg: DictConfig, canvas: int) -> str | None:
    """A warning (or ConfigError when model.strict_length) when the canvas exceeds model.max_length."""
    limit = cfg.model.max_length
    if limit is None or canvas <= limit:
        return None
    msg = (
        f"prompt + generation = {canvas} tokens exceeds model.max_length={limit} "
        f"({math.ceil(canvas / limit)}x the training length; the paper runs LLaDA this way for RULER-8k and latency)"
    )
    if cfg.model.strict_length:
        raise ConfigError(msg + "; set model.strict_length=false to allow it")
    return msg

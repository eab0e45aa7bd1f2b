"""Typed schemas of a run (registered in Hydra's ConfigStore) and the checks made before any heavy work.

``configs/config.yaml`` starts from ``run_schema`` (below), so every key a YAML file or an override sets
is type-checked by OmegaConf; ``validate`` then checks values and combinations, and raises
``ConfigError`` with one line that names the setting and what it may be.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from sparsed.attention.registry import METHODS, parse_settings
from sparsed.attention.sparsed import SparseDSettings
from sparsed.config_errors import ConfigError, check_choice
from sparsed.sampling.dream import ALGORITHMS
from sparsed.sampling.llada import REMASKING

ARCHS = ("llada", "dream")
INITS = ("pretrained", "random")
PROMPT_KINDS = ("short", "niah")
GENERATION_TASKS = ("generate", "latency")
EVAL_TASKS = ("ruler", "gsm8k", "humaneval", "mmlu")
TASKS = GENERATION_TASKS + EVAL_TASKS


@dataclass
class ModelConfig:
    name: str = "llada_small_random"
    arch: str = "llada"  # llada | dream
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
    block_length: int = 32  # LLaDA semi-AR block
    temperature: float = 0.0
    remasking: str = "low_confidence"  # LLaDA
    cfg_scale: float = 0.0  # LLaDA
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
    wandb: bool = False
    wandb_project: str = "sparsed"


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    gen: GenConfig = field(default_factory=GenConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    attention: dict[str, Any] = field(default_factory=lambda: {"name": "sparsed"})
    sparsed: SparseDSettings = field(default_factory=SparseDSettings)
    task: dict[str, Any] = field(default_factory=lambda: {"name": "generate"})
    run: RunSettings = field(default_factory=RunSettings)


def register_schemas() -> None:
    ConfigStore.instance().store(name="run_schema", node=RunConfig)


def method_settings(cfg: DictConfig | dict) -> tuple[str, Any]:
    """(method name, typed settings) from the ``attention`` node (and ``sparsed`` for SparseD)."""
    att = dict(OmegaConf.to_container(cfg["attention"], resolve=True)) if isinstance(cfg, DictConfig) else dict(
        cfg["attention"]
    )
    name = att.pop("name", None)
    if name is None:
        raise ConfigError(f"attention.name is missing; choose one of: {', '.join(METHODS)}")
    if name == "sparsed":
        values = OmegaConf.to_container(cfg["sparsed"], resolve=True) if isinstance(cfg, DictConfig) else cfg["sparsed"]
        if att:
            raise ConfigError(f"attention.{next(iter(att))}: SparseD's settings live under sparsed.* (e.g. sparsed.skip=0.2)")
        return name, parse_settings(name, values, where="sparsed")
    return name, parse_settings(name, att)


def validate(cfg: DictConfig) -> tuple[str, Any]:
    """Check every value before anything is loaded; returns the attention method's name and settings."""
    m, g, p = cfg.model, cfg.gen, cfg.prompt
    check_choice("model.arch", m.arch, ARCHS)
    check_choice("model.init", m.init, INITS)
    check_choice("model.dtype", m.dtype, ("auto", "bf16", "fp32", "fp16", "bfloat16", "float32", "float16"))
    check_choice("task.name", cfg.task.get("name"), TASKS)
    if cfg.task.name == "latency" and int(cfg.task.get("repeats", 1)) < 1:
        raise ConfigError(f"task.repeats={cfg.task.repeats} must be >= 1")
    if m.init == "pretrained" and not m.path:
        raise ConfigError("model.path is not set; give a checkpoint folder or hub id, or use model.init=random")
    if m.init == "random" and not m.architecture and not m.path:
        raise ConfigError("model.init=random needs model.architecture (config.json keys) or a model.path to read them from")
    if m.device != "auto" and not (m.device == "cpu" or m.device.startswith("cuda")):
        raise ConfigError(f"model.device={m.device!r} is not allowed; choose one of: auto, cpu, cuda, cuda:N")
    if g.gen_length <= 0 or g.steps <= 0:
        raise ConfigError(f"gen.gen_length={g.gen_length} and gen.steps={g.steps} must be positive")
    if m.arch == "llada":
        if g.block_length <= 0 or g.gen_length % g.block_length:
            raise ConfigError(f"gen.gen_length={g.gen_length} is not divisible by gen.block_length={g.block_length}")
        n_blocks = g.gen_length // g.block_length
        if g.steps % n_blocks:
            raise ConfigError(
                f"gen.steps={g.steps} is not divisible by the number of blocks ({n_blocks} = gen_length/block_length)"
            )
        check_choice("gen.remasking", g.remasking, REMASKING)
    else:
        check_choice("gen.alg", g.alg, ALGORITHMS)
    if g.temperature < 0:
        raise ConfigError(f"gen.temperature={g.temperature} must be >= 0")
    if g.top_p is not None and not 0 < g.top_p <= 1:
        raise ConfigError(f"gen.top_p={g.top_p} is outside (0, 1]")
    check_choice("prompt.kind", p.kind, PROMPT_KINDS)
    check_choice("prompt.haystack", p.haystack, ("essay", "noise"))
    if p.kind == "niah" and (p.length is None or p.length <= g.gen_length + 64):
        raise ConfigError(f"prompt.length={p.length} must exceed gen.gen_length={g.gen_length} by at least 64 tokens")
    name, settings = method_settings(cfg)
    if name == "sparsed" and settings.compat == "reference" and g.steps * settings.skip >= g.steps - 2:
        raise ConfigError(f"sparsed.skip={settings.skip} leaves no sparse step out of gen.steps={g.steps}")
    return name, settings


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

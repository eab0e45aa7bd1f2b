"""Building a run from a validated config: tokenizer, model, attention method and cache strategy.

``run.py`` (through ``sparsed.runner``), the evaluation tasks and the lm-eval model all build their
runs here, so a method gets the same settings, model facts and quirk resolution everywhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sparsed.attention.base import AttentionMethod
from sparsed.attention.registry import METHODS
from sparsed.cache.base import CacheStrategy
from sparsed.cache.registry import CACHES
from sparsed.config import Choice, RunChoices
from sparsed.config_errors import ConfigError
from sparsed.facts import ModelFacts
from sparsed.models.loading import (
    ARCHITECTURES,
    PACKAGE_ROOT,
    args_for,
    load_model,
    looks_like_hub_id,
    random_model,
    resolve_checkpoint,
    resolve_device,
    safetensors_files,
)
from sparsed.models.transformer import DiffusionLM


@dataclass
class BuiltRun:
    tokenizer: Any
    model: DiffusionLM
    method: AttentionMethod
    cache: CacheStrategy
    choices: RunChoices


def load_run_tokenizer(cfg: DictConfig):  # noqa: ANN201 - a transformers tokenizer
    from sparsed.tokenizer import load_tokenizer

    source = cfg.model.tokenizer or (cfg.model.path if cfg.model.init == "pretrained" else None)
    if source and cfg.model.init == "pretrained" and source == cfg.model.path:
        source = str(resolve_checkpoint(source))
    return load_tokenizer(source)


def build_model(cfg: DictConfig, tokenizer: Any) -> DiffusionLM:  # noqa: ANN401
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


def make_method(choice: Choice, facts: ModelFacts) -> AttentionMethod:
    return METHODS[choice.name].build(choice.settings, facts)


def make_cache(choice: Choice, facts: ModelFacts) -> CacheStrategy:
    return CACHES[choice.name].build(choice.settings, facts)


def check_checkpoint(cfg: DictConfig) -> None:
    """A missing folder, a malformed config.json, a truncated weight file or a checkpoint of another
    architecture fails here, in one line, before anything heavy."""
    tok = cfg.model.tokenizer
    if tok is not None and not (Path(tok).expanduser().is_dir() or (PACKAGE_ROOT / tok).is_dir() or looks_like_hub_id(tok)):
        raise ConfigError(f"model.tokenizer={tok}: no such tokenizer folder (nor a hub id)")
    if cfg.model.init != "pretrained":
        return
    ckpt = resolve_checkpoint(cfg.model.path)
    try:
        args_for(ckpt, cfg.model.arch)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"model.path={cfg.model.path}: config.json is not valid JSON ({exc})") from exc
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"model.path={cfg.model.path}: config.json lacks or mistypes a setting of a "
                          f"{cfg.model.arch} model ({type(exc).__name__}: {exc})") from exc
    check_weight_files(ckpt, cfg.model.path)


def check_weight_files(ckpt: Path, setting: str) -> None:
    """Every safetensors file exists and its header covers the file (a cut-off download does not)."""
    from safetensors import safe_open

    try:
        files = safetensors_files(ckpt)
    except (OSError, json.JSONDecodeError, KeyError) as exc:
        raise ConfigError(f"model.path={setting}: unreadable weight index ({type(exc).__name__}: {exc})") from exc
    for f in files:
        if not f.is_file():
            raise ConfigError(f"model.path={setting}: weight file {f.name} is missing (an incomplete download?)")
        try:
            with safe_open(str(f), framework="pt", device="cpu"):
                pass
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error type
            raise ConfigError(f"model.path={setting}: {f.name} is not a readable safetensors file "
                              f"({str(exc).strip().splitlines()[0]}); the file may be truncated, download it again") from exc


def check_runtime(cfg: DictConfig, choices: RunChoices) -> None:
    """Settings that need something this machine lacks (a FlashAttention build, a GPU) fail before loading."""
    device = resolve_device(cfg.model.device)
    for choice in (choices.attention, choices.cache):
        check = getattr(choice.settings, "check_runtime", None)
        if check is not None:
            check(device)


def prepare(cfg: DictConfig, choices: RunChoices) -> BuiltRun:
    """Tokenizer, model, attention method and cache strategy for a validated config."""
    check_runtime(cfg, choices)
    check_checkpoint(cfg)
    tokenizer = load_run_tokenizer(cfg)
    model = build_model(cfg, tokenizer)
    facts = model.args.facts
    return BuiltRun(tokenizer, model, make_method(choices.attention, facts), make_cache(choices.cache, facts), choices)

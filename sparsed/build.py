"""Building a run from a validated config: tokenizer, model, attention method and cache strategy.

``run.py`` (through ``sparsed.runner``), the evaluation tasks and the lm-eval model all build their
runs here, so a method gets the same settings, model facts and quirk resolution everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
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
    args_for,
    load_model,
    random_model,
    resolve_checkpoint,
    resolve_device,
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
    """A missing folder or a checkpoint of another architecture fails here, before anything heavy."""
    if cfg.model.init == "pretrained":
        args_for(resolve_checkpoint(cfg.model.path), cfg.model.arch)


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

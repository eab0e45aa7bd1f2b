"""Model families by name, found among the modules of ``sparsed/models/`` that define ``FAMILY``.

A family is one checkpoint layout (config mapping and parameter-name map onto ``DiffusionLM``) plus
the sampler its released code decodes with. Adding a model family is one module here (with its
sampler in ``sparsed/sampling/``) plus one ``configs/model/<name>.yaml``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sparsed.lazy_registry import LazyRegistry


@dataclass(frozen=True)
class Family:
    name: str
    model_types: tuple[str, ...]  # config.json model_type values of this family (lower case)
    args_from_config: Callable[[dict[str, Any]], Any]
    map_name: Callable[[str], str | None]  # checkpoint parameter name -> DiffusionLM name (None: skip)
    sampler: str  # "module:function" of the family's sampler, imported on first use
    gen_checker: str  # "module:function" validating gen.* for this sampler before anything loads
    # block diffusion (attention causal across blocks): every forward carries a Layout, so only attention
    # methods that serve layouts can run it
    block_causal: bool = False
    # ModelArgs -> config.json and internal -> checkpoint name, for families the project saves (training)
    config_from_args: Callable[[Any], dict[str, Any]] | None = None
    checkpoint_name: Callable[[str], str] | None = None

    def _load(self, path: str) -> Callable:
        module, fn = path.split(":")
        return getattr(importlib.import_module(module), fn)

    def sample(self, *args: Any, **kwargs: Any) -> Any:  # noqa: ANN401 - a GenerationOutput
        return self._load(self.sampler)(*args, **kwargs)

    def check_gen(self, gen: Any) -> None:  # noqa: ANN401
        self._load(self.gen_checker)(gen)


def _family_of(module: Any) -> list[Family]:  # noqa: ANN401
    fam = getattr(module, "FAMILY", None)
    return [fam] if isinstance(fam, Family) else []


FAMILIES: LazyRegistry = LazyRegistry("sparsed.models", _family_of,
                                      skip=("registry", "loading", "transformer", "kv_cache"))

"""Makes lm-eval's own command line know the ``sparsed`` model once this project is installed.

lm-eval (0.4.13) finds models only in its registry and has no plugin entry point, so the installed
package carries ``sparsed_lm_eval.pth``, whose one line imports this module at interpreter start. It costs
a few microseconds and imports nothing heavy: it waits for lm-eval to load its model table
(``lm_eval.models``) and then registers ``sparsed`` there as a lazy placeholder, so that

    lm_eval --model sparsed --model_args model=llada,model.path=/ckpt/LLaDA-1.5 --tasks gsm8k

imports ``sparsed.eval.lm_eval_model`` only when that model is asked for.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from types import ModuleType
from typing import Any

TARGET = "lm_eval.models"
MODEL = ("sparsed", "sparsed.eval.lm_eval_model:SparsedLM")


def register() -> None:
    from lm_eval.api.registry import model_registry

    if MODEL[0] not in model_registry:
        model_registry.register(MODEL[0], target=MODEL[1])


class _Loader(importlib.abc.Loader):
    """lm_eval.models' own loader, followed by the registration."""

    def __init__(self, inner: Any) -> None:  # noqa: ANN401 - a loader
        self.inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.inner.exec_module(module)
        register()


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:  # noqa: ANN401
        if name != TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader)
        return spec


def install() -> None:
    if TARGET in sys.modules:
        register()
    elif not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


install()

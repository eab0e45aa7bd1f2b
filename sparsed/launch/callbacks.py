"""Hydra callbacks of the experiments: the paper's tables rebuilt from a sweep's folder when it ends."""

from __future__ import annotations

import logging
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger("sparsed")


class Tables(Callback):
    """``python experiments/collect.py <sweep dir> --table ...`` at the end of the sweep (its report first)."""

    def __init__(self, tables: list[str] | None = None) -> None:
        self.tables = list(tables or [])

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:  # noqa: ANN401
        from sparsed.tables import main

        args = [str(config.hydra.sweep.dir)] + [a for t in self.tables for a in ("--table", t)]
        try:
            main(args)
        except Exception as exc:  # noqa: BLE001 - a table is never worth a failed sweep; collect.py redoes it
            log.warning("tables of %s not built (%s: %s)", config.hydra.sweep.dir, type(exc).__name__, exc)

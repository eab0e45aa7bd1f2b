"""Hydra's basic sweeper plus the checks and the report of ``sparsed.launch.sweep`` (``hydra/sweeper=sparsed``).

Hydra loads sweepers only from the ``hydra_plugins`` namespace package, hence this small module; the
logic lives in ``sparsed.launch.sweep``, imported when a sweep runs (Hydra scans plugins at every start).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper


class SparsedSweeper(BasicSweeper):
    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        from sparsed.launch.sweep import check_jobs

        super().validate_batch_is_legal(batch)
        check_jobs(self.hydra_context.config_loader, self.config, batch)

    def sweep(self, arguments: list[str]) -> Any:  # noqa: ANN401
        from sparsed.launch.sweep import report

        returns = super().sweep(arguments)
        report(self.config, [r for batch in returns for r in batch])
        return returns

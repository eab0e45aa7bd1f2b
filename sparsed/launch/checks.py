"""The checks a run's settings get before anything is loaded, shared by run.py and the sweeper.

``check_settings`` needs nothing but the config (no files, no devices), so a sweep runs it on every
job before it launches one; what needs this machine (a GPU, a checkpoint, memory) is checked inside the
job, still before the model loads.
"""

from __future__ import annotations

import typing
from collections.abc import Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig

from sparsed.config import EVAL_TASKS, RunChoices, validate
from sparsed.config_errors import ConfigError
from sparsed.launch.errors import schema_field


def _is_bool_field(tp: object) -> bool:
    return tp is bool or bool in typing.get_args(tp)


def check_override_types(overrides: Sequence[str]) -> None:
    """OmegaConf turns ``run.warmup=-5`` into True; a switch given anything but true/false is an error."""
    for o in OverridesParser.create().parse_overrides(list(overrides)):
        if o.is_sweep_override() or o.is_delete():
            continue
        field = schema_field(o.key_or_group)
        if field is None or field[0] is None or not _is_bool_field(field[0]):
            continue
        value = o.value()
        if not isinstance(value, bool) and not (value is None and type(None) in typing.get_args(field[0])):
            raise ConfigError(f"{o.key_or_group}={o.get_value_element_as_str()} must be true or false")


def check_settings(cfg: DictConfig) -> RunChoices:
    """Every value and combination of a run, the benchmark's settings included; raises ConfigError."""
    choices = validate(cfg)
    if cfg.task.name in EVAL_TASKS:
        from sparsed.eval.runner import check_eval_settings
        from sparsed.eval.settings import parse_settings

        check_eval_settings(cfg, parse_settings(cfg), choices)
    return choices

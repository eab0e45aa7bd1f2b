"""One line for every composition error Hydra or OmegaConf raises, naming the setting and what it may be.

Hydra prints several lines (and a hint about HYDRA_FULL_ERROR) for a wrong type, an unknown key or a
missing group option; ``one_line`` turns each into the same form as a ``ConfigError``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf.errors import OmegaConfBaseException

from sparsed.config_errors import ConfigError

TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string",
              dict: "a mapping ({key: value})", list: "a list ([a,b])"}


def schema_field(full_key: str) -> tuple[Any, list[str]] | None:
    """(the field's type, the sibling settings) of a dotted key in the run schema, or None."""
    from sparsed.config import RunConfig

    cls: Any = RunConfig
    parts = full_key.split(".")
    for i, part in enumerate(parts):
        if not dataclasses.is_dataclass(cls):
            return None
        found = {f.name: f for f in dataclasses.fields(cls)}
        if part not in found:
            return None if i < len(parts) - 1 else (None, list(found))
        f = found[part]
        if i == len(parts) - 1:
            return typing.get_type_hints(cls).get(part), list(found)
        cls = f.default_factory() if f.default_factory is not dataclasses.MISSING else None  # type: ignore[misc]
        cls = type(cls) if dataclasses.is_dataclass(cls) else None
    return None


def describe_type(tp: Any) -> str:  # noqa: ANN401 - a typing annotation
    """'an integer or null' for ``int | None``."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        words = [describe_type(a) for a in args if a is not type(None)]
        return " or ".join(words) + (" or null" if type(None) in args else "")
    base = typing.get_origin(tp) or tp
    return TYPE_WORDS.get(base, getattr(base, "__name__", str(base)))


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0].strip() if text.strip() else text


def one_line(exc: BaseException) -> str | None:
    """The message for a bad command-line setting, or None when ``exc`` is not one."""
    if isinstance(exc, ConfigError):
        return str(exc)
    if isinstance(exc, MissingConfigException) and exc.options is not None and exc.missing_cfg_file:
        group, _, option = exc.missing_cfg_file.rpartition("/")
        return f"{group}={option} is not an option; choose one of: {', '.join(exc.options)}"
    if isinstance(exc, OverrideParseException):
        return f"cannot parse override {_first_line(str(exc))}"
    if isinstance(exc, ConfigCompositionException | OmegaConfBaseException):
        cause = exc.__cause__ if isinstance(exc.__cause__, OmegaConfBaseException) else exc
        key = getattr(cause, "full_key", None)
        if isinstance(cause, OmegaConfBaseException) and key:
            field = schema_field(key)
            msg = _first_line(getattr(cause, "msg", None) or str(cause))
            if "not in" in msg or "not in struct" in msg:  # an unknown key
                known = f"; settings there: {', '.join(field[1])}" if field else ""
                return f"{key} is not a setting{known} (to add a new key use +{key}=...)"
            if field and field[0] is not None:
                return f"{key} must be {describe_type(field[0])} ({msg})"
            return f"{key}: {msg}"
        return _first_line(str(exc))
    return None

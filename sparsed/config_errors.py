"""One exception type for bad settings, so that every entry point reports them the same way."""

from __future__ import annotations

from collections.abc import Iterable


class ConfigError(ValueError):
    """A setting has a value it may not take; the message names the setting and what is allowed."""


def check_choice(setting: str, value: object, allowed: Iterable[object]) -> None:
    allowed = list(allowed)
    if value not in allowed:
        raise ConfigError(f"{setting}={value!r} is not allowed; choose one of: {', '.join(map(str, allowed))}")

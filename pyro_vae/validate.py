"""Checks of single values; each raises :class:`~pyro_vae.errors.ConfigError` naming the option."""

from __future__ import annotations

import math
from typing import Any

from .errors import ConfigError


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def positive_int(name: str, value: Any) -> None:
    if not _is_int(value) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer, not {value!r}")


def nonnegative_int(name: str, value: Any) -> None:
    if not _is_int(value) or value < 0:
        raise ConfigError(f"{name} must be a non-negative integer, not {value!r}")


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def positive_float(name: str, value: Any) -> None:
    if not _is_finite_number(value) or value <= 0:
        raise ConfigError(f"{name} must be a positive finite number, not {value!r}")


def nonnegative_float(name: str, value: Any) -> None:
    if not _is_finite_number(value) or value < 0:
        raise ConfigError(f"{name} must be a non-negative finite number, not {value!r}")

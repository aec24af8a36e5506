"""Checks of single values; each raises :class:`~.errors.ConfigError` naming the option."""

from __future__ import annotations

import math
import os
from typing import Any

from .errors import ConfigError


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


#: Every count, size and seed is below 2^31: larger ones overflow torch's and NumPy's seeds and
#: 32-bit indices long before they could fit in memory.
MAX_INT = 2**31 - 1


def positive_int(name: str, value: Any) -> None:
    if not _is_int(value) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer, not {value!r}")
    _at_most(name, value)


def nonnegative_int(name: str, value: Any) -> None:
    if not _is_int(value) or value < 0:
        raise ConfigError(f"{name} must be a non-negative integer, not {value!r}")
    _at_most(name, value)


def _at_most(name: str, value: int) -> None:
    if value > MAX_INT:
        raise ConfigError(f"{name} must be at most 2^31 - 1 = {MAX_INT}, not {value}")


def memory_bytes() -> int | None:
    """This machine's physical memory in bytes, or ``None`` where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_allocation(what: str, elements: int, bytes_per_element: int = 4) -> None:
    """Refuse, in one line, to allocate ``elements`` numbers that cannot fit in memory."""
    total, available = elements * bytes_per_element, memory_bytes()
    if available is not None and total > available:
        raise ConfigError(
            f"{what} would need {total / 2**30:.1f} GiB, more than this machine's "
            f"{available / 2**30:.1f} GiB of memory"
        )


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def positive_float(name: str, value: Any) -> None:
    if not _is_finite_number(value) or value <= 0:
        raise ConfigError(f"{name} must be a positive finite number, not {value!r}")


def nonnegative_float(name: str, value: Any) -> None:
    if not _is_finite_number(value) or value < 0:
        raise ConfigError(f"{name} must be a non-negative finite number, not {value!r}")

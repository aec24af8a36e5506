"""Flat name -> factory registries whose lookup errors list the valid names."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from .errors import ConfigError, UnknownNameError

F = TypeVar("F", bound=Callable)


class Registry(dict[str, F], Generic[F]):
    """A ``dict`` of factories keyed by name.

    ``registry[name]`` raises :class:`~pyro_vae.errors.UnknownNameError` naming the kind of
    thing and every valid name, so a typo on the command line or in Python reads the same.

    Args:
        kind: What the registry holds, e.g. ``"likelihood"``; used in error messages.
    """

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def __missing__(self, name: str) -> F:
        valid = ", ".join(sorted(self))
        raise UnknownNameError(f"unknown {self.kind} {name!r}; choose one of: {valid}")

    def register(self, name: str) -> Callable[[F], F]:
        """Decorator that adds a factory under ``name``."""

        def add(factory: F) -> F:
            if name in self:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self[name] = factory
            return factory

        return add

    def build(self, name: str, *args: Any, **options: Any) -> Any:
        """Call the factory registered as ``name``.

        Options the factory does not take are refused with a message that lists the ones it
        does take, before anything is built.
        """
        factory = self[name]
        try:
            inspect.signature(factory).bind(*args, **options)
        except TypeError:
            params = list(inspect.signature(factory).parameters.values())[len(args) :]
            kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
            accepted = [p.name for p in params if p.kind in kinds]
            unknown = sorted(set(options) - set(accepted)) or sorted(options)
            raise ConfigError(
                f"{self.kind} {name!r} does not take {', '.join(unknown)}; "
                f"it takes: {', '.join(accepted) or 'no options'}"
            ) from None
        return factory(*args, **options)

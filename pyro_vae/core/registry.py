"""Flat name -> factory registries whose lookup errors list the valid names."""

from __future__ import annotations

import collections.abc
import inspect
import math
import types
import typing
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from .errors import ConfigError, UnknownNameError
from .validate import MAX_INT

F = TypeVar("F", bound=Callable)


class Registry(dict[str, F], Generic[F]):
    """A ``dict`` of factories keyed by name.

    ``registry[name]`` raises :class:`~pyro_vae.core.errors.UnknownNameError` naming the kind of
    thing and every valid name, so a typo on the command line or in Python reads the same.

    Args:
        kind: What the registry holds, e.g. ``"likelihood"``; used in error messages.
        positional: How many leading arguments the family passes to every factory (a prior
            gets ``latent_dim`` and its context); the parameters after them are its options.
    """

    def __init__(self, kind: str, positional: int = 0) -> None:
        super().__init__()
        self.kind = kind
        self.positional = positional

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

    def check_options(self, name: str, options: dict[str, Any]) -> None:
        """Refuse options the factory registered as ``name`` does not take (listing the ones
        it does) or values not of an option's declared type, before anything is built."""
        factory = self[name]
        try:
            params = list(inspect.signature(factory).parameters)[: self.positional]
            inspect.signature(factory).bind_partial(*params, **options)
        except TypeError:
            kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
            params = list(inspect.signature(factory).parameters.values())[self.positional :]
            accepted = [p.name for p in params if p.kind in kinds]
            unknown = sorted(set(options) - set(accepted)) or sorted(options)
            raise ConfigError(
                f"{self.kind} {name!r} does not take {', '.join(unknown)}; "
                f"it takes: {', '.join(accepted) or 'no options'}"
            ) from None
        check_option_types(f"{self.kind} {name!r}", factory, options)

    def takes(self, name: str, option: str) -> bool:
        """Whether the factory registered as ``name`` has the option ``option``."""
        params = list(inspect.signature(self[name]).parameters)[self.positional :]
        return option in params

    def build(self, name: str, *args: Any, **options: Any) -> Any:
        """Call the factory registered as ``name`` (options checked by :meth:`check_options`;
        arguments the call cannot take are refused before anything is built)."""
        self.check_options(name, options)
        factory = self[name]
        try:
            inspect.signature(factory).bind(*args, **options)
        except TypeError as err:
            raise ConfigError(f"{self.kind} {name!r}: {err}") from None
        return factory(*args, **options)


#: What each simple option type accepts, and how a refusal names it.
_ACCEPTS: dict[type, tuple[Callable[[Any], bool], str]] = {
    bool: (lambda v: isinstance(v, bool), "true or false"),
    int: (
        lambda v: isinstance(v, int) and not isinstance(v, bool) and abs(v) <= MAX_INT,
        "an integer of at most 2^31 - 1 in size",
    ),
    float: (
        lambda v: isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v),
        "a finite number",
    ),
    str: (lambda v: isinstance(v, str), "text"),
}


class IntSequence:
    """Stands for an option annotated ``Sequence[int]`` (e.g. layer widths)."""


_ACCEPTS[IntSequence] = (
    lambda v: isinstance(v, list | tuple) and all(_ACCEPTS[int][0](i) for i in v),
    "a list of integers, e.g. [32,64]",
)


def option_types(factory: Callable) -> dict[str, tuple[type, bool]]:
    """The options of ``factory`` declared (annotated) as bool, int, float, str or a sequence
    of ints, each with whether ``None`` is accepted too (``int | None``)."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        hints = typing.get_type_hints(target)
    except (NameError, TypeError):  # an annotation that does not resolve: nothing to check
        return {}
    declared = {}
    for name, hint in hints.items():
        origin = typing.get_origin(hint)
        if origin in (collections.abc.Sequence, tuple, list) and typing.get_args(hint) in (
            (int,),
            (int, ...),
        ):
            declared[name] = (IntSequence, False)
            continue
        if origin not in (None, typing.Union, types.UnionType):
            continue  # another container: its factory checks it
        args = set(typing.get_args(hint)) or {hint}
        optional = type(None) in args
        simple = [a for a in args if a in _ACCEPTS]
        if len(simple) == 1 and len(args) == 1 + optional:
            declared[name] = (simple[0], optional)
    return declared


def check_option_types(what: str, factory: Callable, options: dict[str, Any]) -> None:
    """Refuse an option whose value is not of its declared type, in one line naming both."""
    declared = option_types(factory)
    for name, value in options.items():
        if name not in declared or (value is None and declared[name][1]):
            continue
        accepts, words = _ACCEPTS[declared[name][0]]
        if not accepts(value):
            raise ConfigError(f"{what} option {name} takes {words}, not {value!r}")

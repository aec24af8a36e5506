"""The command line's grammar: every option maps onto a field of a config dataclass of the
Python API (``--latent-dim`` is ``TrainConfig.latent_dim``), and ``KEY=VALUE`` options become
dicts (a key given twice is refused)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import MISSING, fields
from typing import Any, NoReturn

from .core.errors import ConfigError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _typed(name: str, kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{name} takes {'an integer' if kind is int else 'a number'}, not {text!r}"
            ) from None

    parse.__name__ = kind.__name__
    return parse


def _add_config_options(
    parser: argparse.ArgumentParser, config_class: type | None = None, skip: Sequence[str] = ()
) -> None:
    """One option per field of a config dataclass (default :class:`TrainConfig`)."""
    from .config import TrainConfig

    for f in fields(config_class or TrainConfig):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.default_factory is dict:  # prior_options -> --prior-options, alias --prior-opt
            alias = "--" + f.name.removesuffix("_options").replace("_", "-") + "-opt"
            parser.add_argument(
                flag,
                alias,
                dest=f.name,
                action="extend",
                nargs="+",
                type=_key_value,
                default=None,
                metavar="KEY=VALUE",
                help=f.metadata["help"],
            )
            continue
        default = f.default if f.default is not MISSING else None
        help_text = f"{f.metadata['help']} (default: {default})"
        if isinstance(default, tuple):
            parser.add_argument(
                flag, nargs="+", type=_typed(flag, int), default=None, metavar="N", help=help_text
            )
        elif isinstance(default, bool):
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
        elif default is None and f.metadata.get("type") in (int, float):  # a number or unset
            kind = f.metadata["type"]
            parser.add_argument(
                flag,
                type=_typed(flag, kind),
                default=None,
                metavar=f.metadata.get("metavar", kind.__name__.upper()),
                help=help_text,
            )
        elif default is None or isinstance(default, str):
            metavar = f.metadata.get("metavar", "NAME" if default else "PATH")
            aliases = f.metadata.get("aliases", ())
            parser.add_argument(
                flag, *aliases, dest=f.name, default=None, metavar=metavar, help=help_text
            )
        else:
            parser.add_argument(
                flag,
                type=_typed(flag, type(default)),
                default=None,
                metavar=type(default).__name__.upper(),
                help=help_text,
            )


def _key_value(text: str) -> tuple[str, Any]:
    """``key=value`` with the value read as JSON where it can be (3, 0.5, true), else text."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, not {text!r}")
    try:
        return key.replace("-", "_"), json.loads(value)
    except ValueError:
        return key.replace("-", "_"), value


def build_parser() -> argparse.ArgumentParser:
    """The ``pyro-vae`` parser with its subcommands."""
    from . import __version__

    parser = _Parser(prog="pyro-vae", description="VAEs as explicit Pyro programs.")
    parser.add_argument("--version", action="version", version=f"pyro-vae {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_train(commands)
    _add_compare(commands)
    _add_diagnose(commands)
    return parser


ALLOW_CHANGED_DATA_HELP = (
    "go on even if the data set's values differ from those the run was fitted to (by "
    "default refused, naming both SHA-256 fingerprints)"
)


def _add_train(commands: Any) -> None:
    train = commands.add_parser(
        "train",
        help="fit a VAE by SVI and write a run folder",
        description="Fit a VAE by SVI on a data set and write config, checkpoint, metrics and "
        "pictures into a run folder.",
    )
    _add_config_options(train)
    train.add_argument("--out", metavar="DIR", help="run folder (default: runs/DATASET-TIME)")
    train.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its checkpoint"
    )
    train.add_argument("--allow-changed-data", action="store_true", help=ALLOW_CHANGED_DATA_HELP)
    train.add_argument(
        "--tensorboard",
        action="store_true",
        help="also log every epoch (losses, test ELBO, KL per dimension, samples and "
        "reconstructions) to TensorBoard, in OUT/tensorboard (pip install pyro-vae[tensorboard])",
    )
    train.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_compare(commands: Any) -> None:
    from .compare import PRESETS

    compare = commands.add_parser(
        "compare",
        help="run several inference methods (and guides, latent priors) on the same model and data",
        description="Fit a grid of methods x guides x latent priors x seeds with the same data, "
        "model and budget; write results.md/.csv/.json and pictures side by side. Options not "
        "given come from the preset.",
    )
    compare.add_argument(
        "--preset",
        default="default",
        choices=list(PRESETS),
        help="budget: quick (under 2 minutes on mnist5k, 2 CPU cores) or default (about 10)",
    )
    _add_grid_axes(compare)
    compare.add_argument(
        "--weight-prior",
        metavar="NAME",
        help="decoder-weight prior for the methods that take one (default: each method's own)",
    )
    compare.add_argument(
        "--proposal-epochs",
        type=_typed("--proposal-epochs", int),
        metavar="INT",
        help="encoder epochs (decoder frozen) for methods fitted without an encoder",
    )
    compare.add_argument(
        "--num-test", type=_typed("--num-test", int), metavar="INT", help="test images used"
    )
    _add_config_options(
        compare, skip=("guide", "guide_options", "prior", "prior_options", "seed", "weight_prior")
    )
    compare.add_argument("--out", metavar="DIR", help="results folder (default: runs/compare-TIME)")
    compare.add_argument("--quiet", action="store_true", help="no progress output")


def _add_grid_axes(compare: argparse.ArgumentParser) -> None:
    """The grid's axes (methods, guides, priors, seeds) and their scoped options."""
    from .compare import all_methods

    axes = (
        ("--methods", "methods (default: every registered one: " + " ".join(all_methods()) + ")"),
        ("--guides", "variational families (default: diagonal)"),
        ("--priors", "latent priors (default: standard-normal)"),
    )
    for flag, text in axes:
        compare.add_argument(flag, nargs="+", metavar="NAME", help=text)
    compare.add_argument(
        "--seeds", nargs="+", type=_typed("--seeds", int), metavar="N", help="seeds (default: 0)"
    )
    scoped = (
        (
            "--method-opt",
            "METHOD.KEY=VALUE",
            "method options, e.g. iwae.particles=10 nuts-latent.images=8",
        ),
        (
            "--guide-opt",
            "[GUIDE.]KEY=VALUE",
            "guide options, e.g. iaf.steps=4 (without GUIDE. for every guide compared)",
        ),
        (
            "--prior-opt",
            "[PRIOR.]KEY=VALUE",
            "prior options, e.g. vamp.components=20 (without PRIOR. for every prior compared)",
        ),
    )
    for flag, metavar, text in scoped:
        compare.add_argument(
            flag, action="extend", nargs="+", type=_key_value, metavar=metavar, help=text
        )


def _add_diagnose(commands: Any) -> None:
    from .diagnose import DiagnoseConfig

    diagnose = commands.add_parser(
        "diagnose",
        help="diagnose a trained run: k-hat, collapse, gaps, NUTS, ELPD (ArviZ)",
        description="Importance-sampled log p(x) with Pareto k-hat per image, posterior "
        "collapse, the aggregate posterior, approximation and amortization gaps, q(z|x) "
        "against NUTS, and ELPD differences to other runs; writes report.md, "
        "diagnostics.json, inference_data.nc and pictures.",
    )
    diagnose.add_argument("run", metavar="RUN", help="run folder written by pyro-vae train")
    diagnose.add_argument(
        "--against",
        nargs="+",
        default=(),
        metavar="RUN",
        help="other run folders on the same data to compare by ELPD",
    )
    _add_config_options(diagnose, DiagnoseConfig)
    diagnose.add_argument("--out", metavar="DIR", help="output folder (default: RUN/diagnostics)")
    diagnose.add_argument("--allow-changed-data", action="store_true", help=ALLOW_CHANGED_DATA_HELP)
    diagnose.add_argument("--quiet", action="store_true", help="no progress output")


def options_as_dicts(given: dict[str, Any]) -> dict[str, Any]:
    """The ``KEY=VALUE`` lists of the ``*_options`` settings as dicts."""
    return {
        k: _unique(v, "--" + k.removesuffix("_options").replace("_", "-") + "-opt")
        if k.endswith("_options")
        else v
        for k, v in given.items()
    }


def _unique(pairs: list[tuple[str, Any]], option: str) -> dict[str, Any]:
    """``KEY=VALUE`` pairs as a dict; a key given twice is refused (which one was meant?)."""
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise ConfigError(
                f"{option} gives {key} twice ({key}={found[key]!r} and {key}={value!r}); "
                "give each key once"
            )
        found[key] = value
    return found


def scoped(pairs: list[tuple[str, Any]] | None, option: str, default_scopes=None):
    """``NAME.KEY=VALUE`` pairs as ``{NAME: {KEY: VALUE}}``; a bare KEY goes to every default
    scope."""
    scoped: dict[str, dict[str, Any]] = {}
    for key, value in pairs or []:
        scope, dot, name = key.rpartition(".")
        if not dot:
            if default_scopes is None:
                raise ConfigError(f"{option} takes METHOD.KEY=VALUE, not {key}={value}")
            for scope in default_scopes:
                _add_once(scoped.setdefault(scope, {}), name, value, option)
            continue
        _add_once(scoped.setdefault(scope.replace("_", "-"), {}), name, value, option)
    return scoped


def _add_once(options: dict[str, Any], key: str, value: Any, option: str) -> None:
    if key in options:
        raise ConfigError(
            f"{option} gives {key} twice for one scope ({options[key]!r} and {value!r}); "
            "give each key once"
        )
    options[key] = value

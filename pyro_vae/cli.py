"""``pyro-vae`` command line: each option maps onto a field of the Python API's config.

Errors caused by the input end with one line on stderr and exit code 2, before anything is
written.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any, NoReturn

from . import smoke
from .core.errors import ConfigError, PyroVAEError, TrainingInterrupted


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


def _train(args: argparse.Namespace) -> None:
    from .config import TrainConfig
    from .training import resume_config, train

    given = {
        f.name: getattr(args, f.name)
        for f in fields(TrainConfig)
        if getattr(args, f.name) is not None
    }
    given = _options_as_dicts(given)
    if args.resume:
        if args.out is None:
            raise ConfigError("--resume needs --out, the run folder to continue")
        config = resume_config(args.out, **given)
    else:
        config = TrainConfig(**given)
    config = smoke.train_config(config)
    out = args.out or f"runs/{config.dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
    if args.allow_changed_data and not args.resume:
        raise ConfigError("--allow-changed-data applies to --resume only")
    metrics = train(
        config,
        out,
        resume=args.resume,
        progress=not args.quiet,
        allow_changed_data=args.allow_changed_data,
    )
    if not metrics:  # a worker other than rank 0 of a torchrun launch: rank 0 reports
        return
    test = metrics["test"]
    print(
        f"{config.dataset} ({config.binarization} binarization): test ELBO {test['elbo']:.2f}, "
        f"log p(x) {test['log_likelihood']:.2f} nats per datapoint "
        f"(importance sampling, K={test['is_samples']}); run folder: {out}"
    )


def _options_as_dicts(given: dict[str, Any]) -> dict[str, Any]:
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


def _scoped(pairs: list[tuple[str, Any]] | None, option: str, default_scopes=None):
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


def _compare(args: argparse.Namespace) -> None:
    from .compare import CompareConfig, compare, preset_config
    from .config import TrainConfig

    base = {
        f.name: getattr(args, f.name)
        for f in fields(TrainConfig)
        if getattr(args, f.name, None) is not None
    }
    base = _options_as_dicts(base)
    grid: dict[str, Any] = {
        name: getattr(args, name)
        for name in (
            "methods",
            "guides",
            "priors",
            "seeds",
            "weight_prior",
            "proposal_epochs",
            "num_test",
        )
        if getattr(args, name) is not None
    }
    grid["method_options"] = _scoped(args.method_opt, "--method-opt")
    defaults = CompareConfig()
    grid["guide_options"] = _scoped(
        args.guide_opt, "--guide-opt", grid.get("guides", defaults.guides)
    )
    grid["prior_options"] = _scoped(
        args.prior_opt, "--prior-opt", grid.get("priors", defaults.priors)
    )
    config = smoke.compare_config(preset_config(args.preset, base=base, **grid))
    out = args.out or f"runs/compare-{time.strftime('%Y%m%d-%H%M%S')}"
    results = compare(config, out, progress=not args.quiet)
    print(f"pyro-vae compare: {len(results['rows'])} fits; results in {out}/results.md")


def _diagnose(args: argparse.Namespace) -> None:
    from .diagnose import DiagnoseConfig, diagnose

    given = {
        f.name: getattr(args, f.name)
        for f in fields(DiagnoseConfig)
        if getattr(args, f.name) is not None
    }
    report = diagnose(
        args.run,
        smoke.diagnose_config(DiagnoseConfig(**given)),
        out_dir=args.out,
        against=tuple(args.against),
        progress=not args.quiet,
        allow_changed_data=args.allow_changed_data,
    )
    imp, col = report["importance"], report["collapse"]
    out = args.out or f"{args.run}/diagnostics"
    print(
        f"{report['dataset']}: log p(x) {imp['log_likelihood']:.2f} nats per datapoint "
        f"(K={imp['is_samples']}), k-hat > 0.7 for "
        f"{100 * imp['khat_shares']['bad (> 0.7)']:.1f} % of images, "
        f"{col['active_units']}/{col['latent_dim']} active units; report: {out}/report.md"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 a system error such as a full disk, 2 bad
    input, 128 + signal number when SIGINT or SIGTERM stopped it)."""
    with warnings.catch_warnings():
        if not sys.warnoptions:  # library warnings never join the one line (unless asked for)
            warnings.simplefilter("ignore")
        return _run(argv)


def _run(argv: Sequence[str] | None) -> int:
    args = None
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as done:  # --help, or a usage error already printed in one line
            return int(done.code or 0)
        if getattr(args, "out", None) is not None and not args.out.strip():
            raise ConfigError("--out must name a folder, not an empty string")
        {"train": _train, "compare": _compare, "diagnose": _diagnose}[args.command](args)
    except BaseException as err:  # noqa: BLE001 - every ending is one line and an exit code
        return _report(err, args)
    return 0


def _report(err: BaseException, args: argparse.Namespace | None) -> int:
    """Say in one line how the command ended; return its exit code."""
    from .signals import signal_received

    if isinstance(err, TrainingInterrupted):
        name = signal.Signals(err.signal_number).name if err.signal_number else "request"
        print(
            f"pyro-vae: stopped by {name} in epoch {err.epoch} after step {err.step}; "
            f"state saved in {err.checkpoint or 'the checkpoint'} (continue with --resume)",
            file=sys.stderr,
        )
        return 128 + (err.signal_number or signal.SIGINT)
    received = getattr(err, "signal_number", None) or signal_received()
    if isinstance(err, KeyboardInterrupt) or received:  # also what an interrupted import broke
        number = received or signal.SIGINT
        print(
            f"pyro-vae: interrupted by {signal.Signals(number).name}; {_what_was_saved(args)}",
            file=sys.stderr,
        )
        return 128 + number
    if isinstance(err, PyroVAEError):
        print(f"pyro-vae: error: {err}", file=sys.stderr)
        return 2
    if _out_of_memory(err):
        print(
            f"pyro-vae: error: not enough memory for this run ({_one_line(err)}); use a smaller "
            "batch, network, number of particles or of test images",
            file=sys.stderr,
        )
        return 2
    if isinstance(err, OSError):  # a full disk, a vanished folder: say so without a traceback
        print(f"pyro-vae: error: {err}", file=sys.stderr)
        return 1
    if not isinstance(err, Exception):  # SystemExit and the like keep their meaning
        raise err
    print(f"pyro-vae: internal error: {_one_line(err)} ({_crash_log()})", file=sys.stderr)
    return 1


def _what_was_saved(args: argparse.Namespace | None) -> str:
    """What an interrupted command leaves to continue from: a checkpoint only ``train`` writes,
    and only once an epoch has finished. Imports nothing (an import may be what was cut)."""
    if args is None:
        return "nothing was written"
    if args.command == "train" and args.out:
        folder = Path(args.out)
        checkpoints = sorted(folder.glob("checkpoint-*.pt"))
        checkpoint = folder / "checkpoint.pt"
        if checkpoint.is_file() or checkpoints:
            where = checkpoint if checkpoint.is_file() else checkpoints[-1]
            return f"the last finished epoch is in {where} (continue with --resume)"
        return "no epoch had finished, so nothing was kept"
    return f"{args.command} keeps no partial results, so nothing was kept; run it again"


def _out_of_memory(err: BaseException) -> bool:
    """Whether torch ran out of CPU or GPU memory (told by the message: importing torch here
    could be what an interrupt broke)."""
    text = str(err)
    return isinstance(err, MemoryError) or (
        isinstance(err, RuntimeError)
        and ("out of memory" in text or "can't allocate memory" in text)
    )


def _one_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def _crash_log() -> str:
    """Write the traceback being handled to a new file; say where (or that it could not be)."""
    import tempfile
    import traceback

    try:
        handle, path = tempfile.mkstemp(prefix="pyro-vae-crash-", suffix=".log")
        with open(handle, "w") as log:
            log.write(traceback.format_exc())
    except OSError:
        return "no traceback log could be written"
    return f"full traceback in {path}; please report it"


def run() -> NoReturn:
    """Console-script entry point: SIGINT and SIGTERM give one line from the first moment.

    During start-up (importing torch and Pyro) a signal is held until the imports are done, so
    that it never leaves a half-imported library; from then on it interrupts at once.
    """
    from .signals import deferred_signals, ignore_signals, raise_on_signals

    try:
        with deferred_signals():
            import pyro  # noqa: F401 - torch, NumPy and Pyro, imported whole
    except KeyboardInterrupt as stop:
        code = _report(stop, None)
    else:
        raise_on_signals()
        code = main()
    ignore_signals()  # the line is said; a late signal must not add a traceback while exiting
    sys.exit(code)

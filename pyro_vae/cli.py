"""``pyro-vae`` command line: each option maps onto a field of the Python API's config (the
grammar is :mod:`.cli_parser`); each command calls the same function a user calls.

Errors caused by the input end with one line on stderr and exit code 2, before anything is
written.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, NoReturn

from . import smoke
from .cli_parser import build_parser, options_as_dicts, scoped
from .core.errors import ConfigError, PyroVAEError, TrainingInterrupted


def _train(args: argparse.Namespace) -> None:
    from .config import TrainConfig
    from .training import resume_config, train

    given = {
        f.name: getattr(args, f.name)
        for f in fields(TrainConfig)
        if getattr(args, f.name) is not None
    }
    given = options_as_dicts(given)
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
        tensorboard=args.tensorboard,
    )
    if not metrics:  # a worker other than rank 0 of a torchrun launch: rank 0 reports
        return
    test = metrics["test"]
    print(
        f"{config.dataset} ({config.binarization} binarization): test ELBO {test['elbo']:.2f}, "
        f"log p(x) {test['log_likelihood']:.2f} nats per datapoint "
        f"(importance sampling, K={test['is_samples']}); run folder: {out} "
        f"(summary: {out}/summary.html)"
    )


def _compare(args: argparse.Namespace) -> None:
    from .compare import CompareConfig, compare, preset_config
    from .config import TrainConfig

    base = {
        f.name: getattr(args, f.name)
        for f in fields(TrainConfig)
        if getattr(args, f.name, None) is not None
    }
    base = options_as_dicts(base)
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
    grid["method_options"] = scoped(args.method_opt, "--method-opt")
    defaults = CompareConfig()
    grid["guide_options"] = scoped(
        args.guide_opt, "--guide-opt", grid.get("guides", defaults.guides)
    )
    grid["prior_options"] = scoped(
        args.prior_opt, "--prior-opt", grid.get("priors", defaults.priors)
    )
    config = smoke.compare_config(preset_config(args.preset, base=base, **grid))
    out = args.out or f"runs/compare-{time.strftime('%Y%m%d-%H%M%S')}"
    results = compare(config, out, progress=not args.quiet)
    print(
        f"pyro-vae compare: {len(results['rows'])} fits; results in {out}/report.html "
        "(and results.md)"
    )


def _diagnose(args: argparse.Namespace) -> None:
    from .diagnose import DiagnoseConfig, diagnose
    from .diagnostics import SectionRefused

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
        f"{col['active_units']}/{col['latent_dim']} active units; report: {out}/report.html "
        "(and report.md)"
    )
    if report.get("refused"):  # the report is written; the refused sections make it exit 2
        raise SectionRefused("; ".join(f"{k}: {v}" for k, v in report["refused"].items()))


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
        kept = (
            f"state saved in {err.checkpoint} (continue with --resume)"
            if err.checkpoint
            else "no state was kept (this kind of run cannot be resumed yet): start it again"
        )
        print(
            f"pyro-vae: stopped by {name} in epoch {err.epoch} after step {err.step}; {kept}",
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

"""A smoke-test budget: with ``PYRO_VAE_SMOKE=1`` every command runs as written, in seconds.

The documentation tests set it to run each command shown in the README and ``docs/`` exactly as
it is printed there, so an example can never drift from the tool. Every size and budget is
capped (networks of 16 units, z of at most 4, an epoch per 40 asked for, a few test images, a
short NUTS); names, files and the order of the commands are untouched. A run under it says so
on stderr: its numbers are not results.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .compare import CompareConfig
    from .config import TrainConfig
    from .diagnose import DiagnoseConfig

#: The environment variable that switches the smoke budget on.
ENV = "PYRO_VAE_SMOKE"
#: Caps of the smoke budget.
WIDTH, LATENT, EPOCHS_PER_SMOKE_EPOCH, IS_SAMPLES, TEST_IMAGES, NUTS_DRAWS = 16, 4, 40, 200, 50, 20
PARTICLES = 8
#: K of a smoke ``train``'s own test score (``compare`` and ``diagnose`` keep K <= 200: their
#: Pareto k̂ needs at least 200 draws).
TRAIN_IS_SAMPLES = 20


def active() -> bool:
    """Whether the smoke budget is on."""
    return os.environ.get(ENV, "") not in ("", "0")


def _say(what: str) -> None:
    print(f"pyro-vae: {ENV} is set: {what} (a smoke test, not a result)", file=sys.stderr)


def train_config(config: TrainConfig, is_samples: int = TRAIN_IS_SAMPLES) -> TrainConfig:
    """``config`` with tiny networks, 1 epoch per 40 asked for, at most 8 particles and
    K <= ``is_samples``."""
    if not active():
        return config
    _say(f"tiny networks, 1 epoch per 40, at most {PARTICLES} particles, K <= {is_samples}")
    from pyro_vae.models import NETWORKS

    if NETWORKS.takes(config.network, "hidden"):
        network = {"hidden": tuple(min(width, WIDTH) for width in config.hidden)}
    else:  # its own options, capped where it has them
        options = dict(config.network_options)
        if NETWORKS.takes(config.network, "channels"):
            options["channels"] = [min(c, 8) for c in options.get("channels", [4, 8])]
        if NETWORKS.takes(config.network, "width"):
            options["width"] = min(options.get("width", WIDTH), WIDTH)
        network = {"network_options": options}
    return replace(
        config,
        **network,
        epochs=max(1, config.epochs // EPOCHS_PER_SMOKE_EPOCH),
        latent_dim=min(config.latent_dim, LATENT),
        particles=min(config.particles, PARTICLES),
        is_samples=min(config.is_samples, is_samples),
    )


def compare_config(config: CompareConfig) -> CompareConfig:
    """``config`` with :func:`train_config`'s caps, 50 test images and a short NUTS."""
    if not active():
        return config
    from pyro_vae.inference.methods import METHODS

    options: dict[str, dict[str, Any]] = {k: dict(v) for k, v in config.method_options.items()}
    for method in config.methods:  # a method's own caps, where it declares them
        short = getattr(METHODS[method], "smoke_options", None)
        if short:
            options[method] = {**options.get(method, {}), **short}
    return replace(
        config,
        base=train_config(config.base, IS_SAMPLES),
        num_test=min(config.num_test or TEST_IMAGES, TEST_IMAGES),
        proposal_epochs=min(config.proposal_epochs, 1),
        method_options=options,
    )


def diagnose_config(config: DiagnoseConfig, quiet: bool = False) -> DiagnoseConfig:
    """``config`` with 50 test images and every budget option at most its declared smoke cap
    (K = 200, two gap images, a short NUTS)."""
    if not active():
        return config
    from .diagnostics import SECTIONS

    if not quiet:
        _say("50 test images, K = 200, 2 gap images, a short NUTS")
    caps = {
        budget.name: min(getattr(config, budget.name), budget.smoke)
        for section in SECTIONS.values()
        for budget in section.budget
        if budget.smoke is not None
    }
    return replace(config, num_test=min(config.num_test, TEST_IMAGES), **caps)

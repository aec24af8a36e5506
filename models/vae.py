"""The variational autoencoder as two Pyro programs over one set of modules.

``VAE.model`` is the generative model p(z) p_theta(x|z) and ``VAE.guide`` the amortized
variational family q_phi(z|x); any Pyro ELBO fits the pair. Prior and likelihood are objects
passed in, so swapping either never touches this file.
"""

from __future__ import annotations

import contextlib
import functools
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.nn import PyroModule, pyro_method
from torch import nn

from pyro_vae.core.errors import ConfigError
from pyro_vae.core.validate import check_allocation

from .guides import GUIDES, EncoderGuide, GuideFamily, moments
from .likelihoods import LIKELIHOODS, Likelihood
from .networks import NETWORKS, mlp_parameters
from .priors import PRIORS, Prior, PriorContext
from .weight_priors import WEIGHT_PRIORS, WeightPrior

T = TypeVar("T")


def local_params(fn: Callable[..., T]) -> Callable[..., T]:
    """Run ``fn`` with Pyro's module-local parameters.

    Parameters then live in the modules (``state_dict``, ``.to(device)``, torch optimisers)
    instead of Pyro's global param store, so two models in one process never share a value
    by name.
    """

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with pyro.settings.context(module_local_params=True):
            return fn(*args, **kwargs)

    return wrapped


def particle_plate(particles: int) -> contextlib.AbstractContextManager:
    """A ``particles`` plate at dim -2 for ``particles`` > 1, else no plate."""
    if particles == 1:
        return contextlib.nullcontext()
    return pyro.plate("particles", particles, dim=-2)


class VAE(PyroModule):
    """Kingma & Welling's VAE written as a Pyro model and guide.

    Args:
        encoder: The amortized variational family q(z|x), a member of
            :data:`~pyro_vae.models.guides.GUIDES` (e.g. the ``diagonal`` Gaussian), or any
            module returning ``(loc, scale)`` of a diagonal Gaussian for ``x``.
        decoder: Any module mapping z, ``(..., latent_dim)``, to the likelihood's parameters,
            ``(..., features)``.
        prior: The latent prior p(z), e.g. ``PRIORS["standard-normal"](latent_dim)``.
        likelihood: The observation model p(x|z), e.g. ``LIKELIHOODS["bernoulli"](784)``.
        weight_prior: Optional prior on the decoder's weights, e.g.
            ``WEIGHT_PRIORS["normal"](scale=1.0)``. Every decoder tensor then becomes a global
            sample site (named in :attr:`weight_sites`), drawn once per model call outside the
            data plate; without one the weights are plain parameters (fitted with the ELBO, a
            point estimate by variational EM).

    Both programs take the same arguments:

    - ``x``: data of shape ``(batch, data_dim)`` (``None`` in the model to generate);
    - ``labels``: class labels, used only by priors that condition on them;
    - ``num_data``: size of the full data set when ``x`` is a minibatch; the ``data`` plate then
      scales log-densities by ``num_data / batch`` so the estimate is of the full-data ELBO;
    - ``indices``: the minibatch's indices into the data set (optional);
    - ``beta``: weight on the latent site in both programs, so the KL term is scaled by it;
    - ``particles``: independent draws of each z_i, in a ``particles`` plate at dim -2 inside
      the data plate (z has shape ``(particles, batch, latent_dim)``; the encoder runs once per
      datapoint). The importance-weighted objective uses it; the default 1 adds no plate.
    """

    def __init__(
        self,
        encoder: GuideFamily | nn.Module,
        decoder: nn.Module,
        prior: Prior,
        likelihood: Likelihood,
        weight_prior: WeightPrior | None = None,
    ):
        if not isinstance(encoder, GuideFamily):  # any module returning (loc, scale)
            encoder = EncoderGuide(encoder)
        # The Pyro context of a PyroModule is made at construction; make this one module-local
        # (prior and likelihood join it when assigned below).
        with pyro.settings.context(module_local_params=True):
            super().__init__()
            initial = {} if weight_prior is None else weight_prior.attach(decoder)
        self.encoder = encoder
        self.decoder = decoder
        self.prior = prior
        self.likelihood = likelihood
        if weight_prior is not None:
            self.weight_prior = weight_prior
        #: Names of the decoder's weight sites (empty without a weight prior).
        self.weight_sites: tuple[str, ...] = tuple(f"decoder.{path}" for path in initial)
        #: PyTorch's initial values of those sites, to start point estimates from.
        self.initial_weights: dict[str, torch.Tensor] = {
            f"decoder.{path}": value for path, value in initial.items()
        }

    def fix_weights(self, values: dict[str, torch.Tensor]) -> None:
        """Replace every weight site by a plain parameter holding ``values[site]``.

        Turns a fitted model with a weight prior into an ordinary VAE (point decoder) that the
        estimators, pictures and checkpoints treat like any other.
        """
        missing = sorted(set(self.weight_sites) - set(values))
        if missing:
            raise ConfigError(f"no value for the weight sites {missing}")
        for site in self.weight_sites:
            owner_path, _, attr = site.rpartition(".")
            owner = self.get_submodule(owner_path)
            delattr(owner, attr)
            setattr(owner, attr, torch.nn.Parameter(values[site].detach().clone()))
        self.weight_sites = ()
        self.initial_weights = {}
        if hasattr(self, "weight_prior"):
            del self.weight_prior

    def _check_point_decoder(self) -> None:
        if self.weight_sites:
            raise ConfigError(
                "the decoder weights are random under a weight prior; call fix_weights() "
                "with point values first"
            )

    @staticmethod
    def data_plate(
        x: torch.Tensor | None,
        batch: int,
        num_data: int | None = None,
        indices: torch.Tensor | None = None,
    ) -> pyro.plate:
        """The data plate, scaled by num_data / batch when ``x`` is a minibatch."""
        if num_data is None or num_data == batch:
            return pyro.plate("data", batch, dim=-1)
        if indices is None:
            indices = torch.arange(batch, device=None if x is None else x.device)
        return pyro.plate("data", size=num_data, subsample=indices, dim=-1)

    @local_params
    @pyro_method
    def model(
        self,
        x: torch.Tensor | None,
        labels: torch.Tensor | None = None,
        *,
        num_data: int | None = None,
        indices: torch.Tensor | None = None,
        beta: float = 1.0,
        batch_size: int | None = None,
        particles: int = 1,
    ) -> torch.Tensor:
        """p(z) p(x|z); returns the decoder output. With ``x=None`` it draws ``batch_size`` x."""
        batch = x.shape[0] if x is not None else (batch_size or len(labels))
        for site in self.weight_sites:  # global sites: drawn once, outside the data plate
            operator.attrgetter(site)(self)
        with self.data_plate(x, batch, num_data, indices), particle_plate(particles):
            with poutine.scale(scale=beta):
                z = pyro.sample("z", self.prior(batch, labels))
            params = self.decoder(z)
            pyro.sample("x", self.likelihood(params), obs=x)
        return params

    @local_params
    @pyro_method
    def guide(
        self,
        x: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        num_data: int | None = None,
        indices: torch.Tensor | None = None,
        beta: float = 1.0,
        batch_size: int | None = None,
        particles: int = 1,
    ) -> None:
        """q_phi(z|x), the encoder's family (:meth:`posterior`)."""
        q = self.posterior(x, labels)
        with self.data_plate(x, x.shape[0], num_data, indices):
            with particle_plate(particles), poutine.scale(scale=beta):
                pyro.sample("z", q)

    def posterior(
        self, x: torch.Tensor, labels: torch.Tensor | None = None
    ) -> dist.TorchDistribution:
        """q(z|x) for each row of ``x``, batch shape ``(len(x),)``, as the guide samples it.

        A family that refines q with the model (``semi-amortized``) runs the model here; under
        a prior that reads labels it needs them, and without them q is the network's alone.
        """
        if not self.encoder.reads_model:
            return self.encoder(x)
        if self.weight_sites:
            raise ConfigError(
                f"the {self.encoder.name} guide refines q with the decoder, which is random "
                "under a weight prior; call fix_weights() first"
            )
        if self.prior.needs_labels and labels is None:
            return self.encoder(x)
        return self.encoder.posterior(x, labels, self.model)

    @local_params
    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Mean of p(x | z = E_q[z|x]): what the model makes of ``x``."""
        self._check_point_decoder()
        mean, _ = moments(self.posterior(x, labels))
        return self.likelihood.mean(self.decoder(mean))

    @local_params
    @torch.no_grad()
    def generate(self, num: int, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Means of p(x|z) for ``num`` draws z ~ p(z)."""
        self._check_point_decoder()
        z = self.prior(num, labels).sample()
        return self.likelihood.mean(self.decoder(z))

    @local_params
    def activations_per_datapoint(self, x: torch.Tensor) -> int:
        """Values the networks' layers produce for one datapoint ``x[:1]`` and one draw of z:
        what a training step keeps per datapoint and particle for the gradient.

        Counted by running the encoder and decoder once with a hook on every layer; the random
        state of ``x``'s device is as it was before.
        """
        counts: list[int] = []
        leaves = [m for m in self.modules() if next(m.children(), None) is None]
        hooks = [
            m.register_forward_hook(lambda _m, _i, out: counts.append(_numel(out))) for m in leaves
        ]
        devices = [x.device.index or 0] if x.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices), torch.no_grad():
                self.decoder(self.encoder(x[:1]).sample())
        finally:
            for hook in hooks:
                hook.remove()
        return sum(counts)

    @property
    def latent_dim(self) -> int:
        return self.prior.latent_dim


def build_vae(
    data_dim: int,
    latent_dim: int = 20,
    hidden: Sequence[int] = (400,),
    *,
    prior: str = "standard-normal",
    likelihood: str = "bernoulli",
    prior_options: dict | None = None,
    likelihood_options: dict | None = None,
    data: torch.Tensor | None = None,
    num_classes: int | None = None,
    weight_prior: str | None = None,
    weight_prior_options: dict | None = None,
    layer: str = "relu",
    guide: str = "diagonal",
    guide_options: dict | None = None,
    network: str = "mlp",
    network_options: dict | None = None,
    image_shape: Sequence[int] | None = None,
) -> VAE:
    """Build a VAE from registry names.

    Args:
        data_dim: Features per datapoint (784 for 28x28 images).
        latent_dim: Size of z.
        hidden: MLP hidden widths, encoder side (the decoder mirrors them); ``()`` for a
            linear VAE.
        prior: Name in :data:`~pyro_vae.models.priors.PRIORS`.
        likelihood: Name in :data:`~pyro_vae.models.likelihoods.LIKELIHOODS`.
        prior_options: Keyword options for the prior.
        likelihood_options: Keyword options for the likelihood.
        data: Training data, for priors that start from it (``vamp``).
        num_classes: Number of labels, for priors that condition on them.
        weight_prior: Name in :data:`~pyro_vae.models.weight_priors.WEIGHT_PRIORS`, or
            ``None`` for plain decoder parameters.
        weight_prior_options: Keyword options for the weight prior.
        layer: MLP hidden layer type, a name in :data:`~pyro_vae.models.networks.LAYERS`.
        guide: The variational family q(z|x), a name in
            :data:`~pyro_vae.models.guides.GUIDES`.
        guide_options: Keyword options for the family (e.g. ``{"steps": 4}`` for ``iaf``).
        network: The encoder body and decoder, a name in
            :data:`~pyro_vae.models.networks.NETWORKS` (``mlp`` reads ``hidden`` and
            ``layer``; ``conv`` reads ``network_options`` and ``image_shape``).
        network_options: Keyword options for the network (e.g. ``{"channels": [32, 64]}``).
        image_shape: ``(H, W)`` or ``(C, H, W)`` of the images, for ``conv``.
    """
    guide_options, network_options = guide_options or {}, dict(network_options or {})
    mlp_shaped = NETWORKS.takes(network, "hidden")  # the MLP family: hidden widths, layer type
    if mlp_shaped:
        network_options = {"hidden": tuple(hidden), "layer": layer, **network_options}
    NETWORKS.check_options(network, network_options)
    GUIDES.check_options(guide, guide_options)
    if mlp_shaped:
        _check_mlp_size(data_dim, latent_dim, guide, guide_options, **network_options)
    nets = NETWORKS.build(network, data_dim, image_shape, latent_dim, **network_options)
    encoder = GUIDES.build(guide, nets.body, nets.width, latent_dim, **guide_options)
    context = PriorContext(encoder=encoder, data=data, num_classes=num_classes)
    return VAE(
        encoder,
        nets.decoder,
        PRIORS.build(prior, latent_dim, context, **(prior_options or {})),
        LIKELIHOODS.build(likelihood, data_dim, **(likelihood_options or {})),
        None
        if weight_prior is None
        else WEIGHT_PRIORS.build(weight_prior, **(weight_prior_options or {})),
    )


def _numel(output: Any) -> int:
    """Values in a layer's output (a tensor, or tensors in a tuple or list)."""
    if isinstance(output, torch.Tensor):
        return output.numel()
    if isinstance(output, tuple | list):
        return sum(_numel(part) for part in output)
    return 0


def _check_mlp_size(
    data_dim: int,
    latent_dim: int,
    guide: str,
    guide_options: dict[str, Any],
    hidden: Sequence[int],
    layer: str,
) -> None:
    """Refuse an MLP VAE too large for memory, before anything is allocated."""
    hidden = tuple(hidden)
    width = hidden[-1] if hidden else data_dim
    heads = 2 * (width * latent_dim + latent_dim)
    extra = GUIDES[guide].count_parameters(data_dim, latent_dim, width, **guide_options)
    check_allocation(
        f"an MLP VAE {data_dim}-{'-'.join(map(str, hidden))}{'-' if hidden else ''}{latent_dim} "
        f"with a {guide} guide, gradients and optimizer state",
        4 * (mlp_parameters(data_dim, latent_dim, hidden, gated=layer == "gated") + heads + extra),
    )


@dataclass
class ModelSpec:
    """The generative model and encoder by name: what :func:`build_vae` takes besides data."""

    latent_dim: int = 20
    hidden: Sequence[int] = (400,)
    prior: str = "standard-normal"
    likelihood: str = "bernoulli"
    prior_options: dict[str, Any] = field(default_factory=dict)
    likelihood_options: dict[str, Any] = field(default_factory=dict)
    layer: str = "relu"
    guide: str = "diagonal"
    guide_options: dict[str, Any] = field(default_factory=dict)
    network: str = "mlp"
    network_options: dict[str, Any] = field(default_factory=dict)
    image_shape: tuple[int, ...] | None = None

    def build(
        self,
        data: torch.Tensor,
        *,
        num_classes: int | None = None,
        weight_prior: str | None = None,
        weight_prior_options: dict | None = None,
    ) -> VAE:
        """The VAE for ``data`` (``(num_data, features)``), on the data's device."""
        return build_vae(
            data.shape[1],
            self.latent_dim,
            self.hidden,
            prior=self.prior,
            likelihood=self.likelihood,
            prior_options=self.prior_options,
            likelihood_options=self.likelihood_options,
            data=data,
            num_classes=num_classes,
            weight_prior=weight_prior,
            weight_prior_options=weight_prior_options,
            layer=self.layer,
            guide=self.guide,
            guide_options=self.guide_options,
            network=self.network,
            network_options=self.network_options,
            image_shape=self.image_shape,
        ).to(data.device)

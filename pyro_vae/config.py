"""The settings of a training run, as one small dataclass the CLI fills field by field."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch

from pyro_vae.inference import LABEL_ESTIMATORS, OBJECTIVES, SVIConfig
from pyro_vae.inference.guide_checks import check_guide
from pyro_vae.models import GUIDES, LAYERS, LIKELIHOODS, NETWORKS, PRIORS, WEIGHT_PRIORS, ModelSpec
from pyro_vae.models.weight_priors import check_point_estimate

from .core.errors import ConfigError
from .core.validate import nonnegative_float, nonnegative_int, positive_int
from .data import BINARIZATIONS, DATASETS, check_dataset


def option(default: Any, help: str, **extra: Any) -> Any:
    """A dataclass field with the help text (and e.g. ``metavar``) the CLI shows for it."""
    return field(default=default, metadata={"help": help, **extra})


#: The :class:`~pyro_vae.models.ModelSpec` fields a run's config holds (``image_shape`` comes
#: from the data).
MODEL_FIELDS = frozenset(f.name for f in fields(ModelSpec)) - {"image_shape"}


@dataclass
class TrainConfig:
    """Everything that defines a ``pyro-vae train`` run; saved as the run's ``config.json``.

    Field names are the CLI's option names (``latent_dim`` is ``--latent-dim``).
    """

    dataset: str = option(
        "mnist5k",
        "data set: " + ", ".join(sorted(DATASETS)) + ", a .npz file (arrays train, test, "
        "train_labels, test_labels) or a folder of images in class subfolders",
    )
    dataset_options: dict[str, Any] = field(
        default_factory=dict,
        metadata={
            "help": "data set options as KEY=VALUE, e.g. image_size=32 test_per_class=20 (an "
            "image folder), num_train=2000 (ppca)"
        },
    )
    data_dir: str | None = option(
        None, "folder with data files (default $PYRO_VAE_DATA or ~/.cache/pyro-vae)"
    )
    binarization: str = option(
        "dynamic", "binarization: dynamic, threshold or none", aliases=("--binarize",)
    )
    latent_dim: int = option(20, "size of z")
    hidden: tuple[int, ...] = option(
        (400,),
        "hidden layer widths of the encoder (the decoder mirrors them); 0 for a linear VAE",
    )
    network: str = option(
        "mlp",
        "encoder body and decoder: "
        + ", ".join(NETWORKS)
        + " (conv: strided convolutions for images; --hidden and --layer are the mlp's)",
    )
    network_options: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "network options as KEY=VALUE, e.g. channels=[32,64] width=256 (conv)"},
    )
    layer: str = option(
        "relu",
        "hidden layer type: "
        + ", ".join(sorted(LAYERS))
        + " (gated = (Wx+b)*sigmoid(Vx+c), the VampPrior paper's MLP)",
    )
    guide: str = option(
        "diagonal",
        "the variational family q(z|x): "
        + ", ".join(GUIDES)
        + " (full-rank: a lower-triangular scale; iaf: inverse autoregressive flow steps; "
        "semi-amortized: refined per datapoint by gradient steps)",
    )
    guide_options: dict[str, Any] = field(
        default_factory=dict,
        metadata={
            "help": "guide options as KEY=VALUE, e.g. steps=4 context_dim=20 flow_hidden=60 "
            "(iaf), steps=5 lr=0.1 max_norm=10 (semi-amortized)"
        },
    )
    likelihood: str = option("bernoulli", "p(x|z): " + ", ".join(sorted(LIKELIHOODS)))
    likelihood_options: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "likelihood options as KEY=VALUE, e.g. scale=shared (normal, laplace)"},
    )
    prior: str = option("standard-normal", "p(z): " + ", ".join(sorted(PRIORS)))
    prior_options: dict[str, Any] = field(
        default_factory=dict,
        metadata={
            "help": "prior options as KEY=VALUE, e.g. components=10 (mog, vamp), "
            "df=3 (student-t), learned=false (class-conditional)"
        },
    )
    weight_prior: str = option(
        "flat",
        "prior on decoder weights: "
        + ", ".join(sorted(WEIGHT_PRIORS))
        + " (flat: the decoder maximises the ELBO; normal, laplace: the ELBO plus log p(w); "
        "hierarchical only for compare's bayes-decoder)",
    )
    weight_prior_options: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "weight-prior options as KEY=VALUE, e.g. scale=0.5 (normal, laplace)"},
    )
    objective: str = option(
        "elbo",
        "elbo (Monte Carlo KL), elbo-analytic-kl or iwae: " + ", ".join(sorted(OBJECTIVES)),
    )
    gradient: str = option(
        "reparam",
        "the guide's gradient estimator: reparam, stl (sticking the landing, with elbo) or "
        "dreg (doubly reparameterised, with iwae)",
    )
    particles: int = option(1, "samples of z per datapoint in each ELBO estimate")
    optimizer: str = option("adam", "adam or clipped-adam")
    lr: float = option(1e-3, "learning rate")
    batch_size: int = option(100, "minibatch size")
    epochs: int = option(40, "passes over the training data")
    beta: float = option(1.0, "weight of the KL term, positive (1 = the ELBO)")
    warmup_epochs: int = option(0, "epochs of linear KL warm-up from 0 to beta")
    clip_grad_norm: float = option(0.0, "clip the gradients' total norm to this (0 = off)")
    on_divergence: str = option(
        "stop",
        "on a NaN/inf loss: stop (keep the last good checkpoint) or rollback (redo the epoch "
        "from its start with half the learning rate, at most 3 times)",
    )
    jit: bool = option(
        False,
        "trace the loss and the final log p(x) estimate with TorchScript: the same numbers "
        "without Pyro's per-step Python overhead (validation runs once, while tracing)",
    )
    compile: bool = option(
        False,
        "capture the training loss and the final log p(x) estimate as graphs and compile them "
        "with torch.compile: the same numbers with the elementwise work fused (each batch "
        "shape compiles once first; not with --jit)",
    )
    keep_checkpoints: int = option(3, "tagged checkpoints kept besides checkpoint.pt")
    seed: int = option(0, "random seed (initialisation, data order, binarization)")
    device: str = option("cpu", "cpu or cuda[:N]")
    is_samples: int = option(1000, "K, importance samples per test image for log p(x)")
    labels: int | None = option(
        None,
        "fit the semi-supervised VAE (M2, Kingma et al. 2014) with this many labelled training "
        "images, balanced over the classes and chosen by the seed (0: unsupervised, a mixture "
        "VAE whose clusters are scored against the labels)",
        metavar="N",
        type=int,
    )
    label_estimator: str = option(
        "enumerate",
        "with --labels, how an unlabelled image's y is estimated: "
        + ", ".join(sorted(LABEL_ESTIMATORS))
        + " (exact sum, score function, Concrete relaxation)",
    )
    classifier_weight: float | None = option(
        None,
        "with --labels, alpha of the classifier term alpha * log q(y|x) on labelled images "
        "(default 0.1 N, the paper's)",
        metavar="ALPHA",
        type=float,
    )

    def __post_init__(self) -> None:
        if isinstance(self.hidden, int):
            self.hidden = (self.hidden,)
        self.hidden = tuple(self.hidden)
        if self.hidden == (0,):
            self.hidden = ()
        if not isinstance(self.dataset_options, dict):
            raise ConfigError(f"dataset_options must be a dict, not {self.dataset_options!r}")
        check_dataset(self.dataset, self.dataset_options)
        BINARIZATIONS[self.binarization]
        LAYERS[self.layer]
        GUIDES[self.guide]
        NETWORKS[self.network]
        if not NETWORKS.takes(self.network, "hidden") and (
            self.hidden != _default("hidden") or self.layer != _default("layer")
        ):
            shaped = ", ".join(n for n in NETWORKS if NETWORKS.takes(n, "hidden"))
            raise ConfigError(
                f"--hidden and --layer shape the {shaped} network, not {self.network}; give its "
                "options with --network-opt"
            )
        LIKELIHOODS[self.likelihood]
        PRIORS[self.prior]
        if not self.plain_decoder:
            check_point_estimate(self.weight_prior, "train fits a point-estimate decoder")
        for name in (
            "network_options",
            "guide_options",
            "prior_options",
            "likelihood_options",
            "weight_prior_options",
        ):
            if not isinstance(getattr(self, name), dict):
                raise ConfigError(f"{name} must be a dict, not {getattr(self, name)!r}")
        GUIDES.check_options(self.guide, self.guide_options)
        NETWORKS.check_options(self.network, self.network_options)
        PRIORS.check_options(self.prior, self.prior_options)
        LIKELIHOODS.check_options(self.likelihood, self.likelihood_options)
        WEIGHT_PRIORS.check_options(self.weight_prior, self.weight_prior_options)
        for name in ("latent_dim", "is_samples"):
            positive_int(name, getattr(self, name))
        nonnegative_int("keep_checkpoints", self.keep_checkpoints)
        nonnegative_float("clip_grad_norm", self.clip_grad_norm)
        for width in self.hidden:
            positive_int("hidden", width)
        nonnegative_int("seed", self.seed)
        check_device(self.device)
        check_guide(self.guide, self.svi_config(), point_decoder=self.plain_decoder)
        if self.labels is not None:
            self._check_semi_supervised()
        elif self.label_estimator != _default("label_estimator") or self.classifier_weight:
            raise ConfigError("--label-estimator and --classifier-weight apply with --labels only")

    def _check_semi_supervised(self) -> None:
        """Refuse the settings the semi-supervised VAE does not have, naming them."""
        nonnegative_int("labels", self.labels)
        LABEL_ESTIMATORS[self.label_estimator]
        if self.classifier_weight is not None:
            nonnegative_float("classifier_weight", self.classifier_weight)
        fixed = {"prior": "standard-normal", "guide": "diagonal", "weight_prior": "flat"}
        fixed |= {"objective": "elbo", "gradient": "reparam"}
        for name, value in fixed.items():
            if getattr(self, name) != value:
                hint = " (--label-estimator chooses how y is estimated)"
                raise ConfigError(
                    f"--labels fits the semi-supervised VAE, whose {name} is {value}; "
                    f"--{name.replace('_', '-')} {getattr(self, name)} does not apply"
                    + (hint if name in ("objective", "gradient") else "")
                )
        if self.jit or self.compile:
            raise ConfigError(
                "--labels fits the semi-supervised VAE eagerly: no --jit or --compile"
            )

    @property
    def plain_decoder(self) -> bool:
        """Whether the decoder is plain parameters maximising the ELBO (a weight prior that
        adds nothing, ``flat``), rather than weight sites under a prior."""
        return WEIGHT_PRIORS[self.weight_prior].plain_decoder

    def svi_config(self) -> SVIConfig:
        """The part of the run that :func:`pyro_vae.inference.fit` takes: every
        :class:`~pyro_vae.inference.SVIConfig` field, by the same name (a clip of 0 is none)."""
        values = {f.name: getattr(self, f.name) for f in fields(SVIConfig)}
        return SVIConfig(**{**values, "clip_grad_norm": self.clip_grad_norm or None})

    def model_spec(self, **changes: Any) -> ModelSpec:
        """The model part of the run: every :class:`~pyro_vae.models.ModelSpec` field this
        config has, by the same name (``changes`` override fields, e.g. ``prior=``, or give
        ``image_shape``, which comes from the data)."""
        values = {
            f.name: getattr(self, f.name) for f in fields(ModelSpec) if f.name in MODEL_FIELDS
        }
        return ModelSpec(**{**values, **changes})

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "hidden": list(self.hidden)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Rebuild from ``config.json``; unknown keys are refused. A folder written before
        ``binarize`` was renamed ``binarization`` is read too."""
        if "binarize" in values:
            values = dict(values)
            values.setdefault("binarization", values.pop("binarize"))
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown settings {unknown}; known: {', '.join(sorted(known))}")
        return cls(**values)


#: Settings a run may change between its checkpoint and a later command (``--resume``, or
#: ``config.json`` rewritten by a resumed run that has not saved a checkpoint yet).
RESUMABLE_CHANGES = (
    "epochs",
    "device",
    "is_samples",
    "keep_checkpoints",
    "on_divergence",
    "jit",
    "compile",
)


def settings_that_differ(saved: TrainConfig, asked: TrainConfig) -> list[str]:
    """The settings other than :data:`RESUMABLE_CHANGES` in which two configs differ."""
    mine, theirs = saved.to_dict(), asked.to_dict()
    return [
        f.name
        for f in fields(TrainConfig)
        if f.name not in RESUMABLE_CHANGES and mine[f.name] != theirs[f.name]
    ]


def _default(name: str) -> Any:
    """The default of a :class:`TrainConfig` setting."""
    return next(f.default for f in fields(TrainConfig) if f.name == name)


def check_device(device: str) -> torch.device:
    """Parse ``cpu`` / ``cuda`` / ``cuda:N`` and make sure it exists here."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device must be cpu or cuda[:N], not {device!r}") from None
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device must be cpu or cuda[:N], not {device!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} asked for, but no CUDA GPU is available here")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device {device!r}: only {torch.cuda.device_count()} GPU(s) here")
    return dev

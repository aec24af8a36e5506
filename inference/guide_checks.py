"""What each variational family can be trained with, checked before any work starts.

A family declares its abilities on its class (:mod:`pyro_vae.models.guides`); this module holds
the rules that pair them with the inference settings, so ``train``, ``compare`` and :func:`fit`
refuse the same combinations with the same words.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyro_vae.models import GUIDES, VAE, GuideFamily, SemiSupervisedVAE

from pyro_vae.core.errors import ConfigError

from .label_estimators import LABEL_ESTIMATORS, LabelEstimator

if TYPE_CHECKING:
    from .svi import SVIConfig


def check_program_guide(program: Any, svi: SVIConfig, objective: Any | None = None) -> None:
    """:func:`check_guide` for a program fitted by :func:`~pyro_vae.inference.fit`: a
    :class:`~pyro_vae.models.VAE`, or a program holding one as ``vae``; the semi-supervised
    VAE needs an ``objective`` that estimates its label, and no other one takes such."""
    if isinstance(program, SemiSupervisedVAE):
        if getattr(objective, "name", None) not in LABEL_ESTIMATORS:
            raise ConfigError(
                "the semi-supervised VAE needs a label estimator as its objective: "
                + ", ".join(sorted(LABEL_ESTIMATORS))
            )
        if svi.jit or svi.compile or svi.gradient != "reparam":
            raise ConfigError(
                "the semi-supervised VAE is fitted eagerly with the reparameterised gradient "
                "of z (no jit, compile, stl or dreg)"
            )
        return
    if isinstance(objective, LabelEstimator):
        raise ConfigError(
            f"the {objective.name} estimator is for a discrete label, which only the "
            "semi-supervised VAE has"
        )
    vae = program if isinstance(program, VAE) else getattr(program, "vae", None)
    if isinstance(vae, VAE):
        check_guide(type(vae.encoder), svi, point_decoder=not vae.weight_sites)


def check_guide(
    guide: str | type[GuideFamily], svi: SVIConfig, *, point_decoder: bool = True
) -> None:
    """Refuse the family ``guide`` with settings it cannot take.

    Args:
        guide: A name in :data:`~pyro_vae.models.guides.GUIDES`, or a family's class.
        svi: The fit's settings (gradient estimator, ``jit``, ``compile``).
        point_decoder: Whether the decoder's weights are plain parameters while the guide
            runs (not sample sites under a weight prior).
    """
    family = GUIDES[guide] if isinstance(guide, str) else guide
    guide = family.name
    if svi.gradient != "reparam" and not family.path_gradient:
        raise ConfigError(
            f"gradient {svi.gradient} evaluates log q with q's parameters stopped, which the "
            f"{guide} guide cannot do without inverting its flow; use gradient reparam, or the "
            "diagonal, full-rank or semi-amortized guide"
        )
    if not family.reads_model:
        return
    if svi.jit or svi.compile:
        raise ConfigError(
            f"the {guide} guide takes gradient steps inside the guide, which --jit and "
            "--compile cannot capture; train it without them"
        )
    if not point_decoder:
        raise ConfigError(
            f"the {guide} guide refines q with the model's decoder, which needs the decoder "
            "weights as plain parameters: use weight prior flat with vae or iwae (not "
            "bayes-decoder or a weight prior)"
        )

"""Inference methods by name, all on the same generative model p(z) p_theta(x|z).

``METHODS.build(name, **options)`` gives a runner; ``runner(problem)`` fits and returns a
:class:`MethodResult` whose ``vae`` has a point decoder and an encoder, so every method is
measured by the same estimators. The methods answer "why not just maximise p(X|W)?":

========================  =====================================================================
``vae``                   amortized VI (encoder guide, any objective); decoder weights a point
                          estimate maximising the ELBO (variational EM: plain parameters under
                          weight prior ``flat``), or the ELBO plus log p(w) (``AutoDelta`` over
                          the weight sites under a weight prior, in an ``AutoGuideList``)
``iwae``                  the same with the importance-weighted bound, K particles
``mle-pairs``             one point z_i per x_i and the weights, all by ``AutoDelta`` under flat
                          priors: maximises sum_i log p(x_i | z_i, theta)
``map-pairs``             the same under the latent prior and a weight prior (MAP)
``mle-prior-mc``          maximises sum_i log (1/K) sum_k p(x_i | z_k), z_k ~ p(z): random z's
                          matched to x's, no encoder
``bayes-decoder``         VI over the decoder weights too (mean-field Normal): "full VB"
``nuts-latent``           NUTS over z for chosen images under a trained decoder: the reference
                          posterior the encoder approximates
========================  =====================================================================

Methods without an encoder (``mle-pairs``, ``map-pairs``, ``mle-prior-mc``) are evaluated with
an encoder fitted afterwards by the ELBO with the decoder frozen, for
``Problem.proposal_epochs`` epochs; their results say so.

A method is one file here that registers its factory in :data:`METHODS`, plus its name in
:data:`MEMBERS` (whose order is ``compare``'s default grid); a user's method registers the same
way from outside and fits through :func:`fit_problem`, the loop every method uses.
"""

from __future__ import annotations

import importlib

#: The members, in registration order (``compare``'s default grid).
MEMBERS = ("amortized", "iwae", "pairs", "prior_mc", "bayes_decoder", "nuts_latent")
for _member in MEMBERS:
    importlib.import_module(f"{__name__}.{_member}")

# ruff: noqa: E402  (the names below are re-exported after the members registered in order)
from pyro_vae.models import ModelSpec

from .amortized import amortized_vi
from .iwae import importance_weighted
from .nuts_latent import nuts_reference
from .problem import METHODS, MethodResult, Problem, Runner, fit_problem, fit_proposal

__all__ = [
    "MEMBERS",
    "METHODS",
    "MethodResult",
    "ModelSpec",
    "Problem",
    "Runner",
    "amortized_vi",
    "fit_problem",
    "fit_proposal",
    "importance_weighted",
    "nuts_reference",
]

"""Exact answers of probabilistic PCA (Tipping & Bishop 1999), the model whose posterior and
maximum likelihood are known in closed form, and the linear VAEs that reach them."""

from __future__ import annotations

import math

import torch
from pyro.distributions import constraints
from pyro_vae.models import VAE, build_vae
from pyro_vae.models.likelihoods import MIN_SCALE as MIN_SCALE_LIKELIHOOD
from pyro_vae.models.networks import MIN_SCALE
from torch.distributions import MultivariateNormal, transform_to


def ppca_truth(dataset) -> tuple[torch.Tensor, torch.Tensor, float]:
    truth = dataset.info["truth"]
    return (
        torch.tensor(truth["W"], dtype=torch.float64),
        torch.tensor(truth["mu"], dtype=torch.float64),
        truth["sigma"],
    )


def ppca_log_likelihood(x, weight, mu, sigma) -> torch.Tensor:
    """Exact log N(x; mu, W W^T + sigma^2 I) per datapoint."""
    x, weight, mu = x.double(), weight.double(), mu.double()
    cov = weight @ weight.T + sigma**2 * torch.eye(len(mu), dtype=torch.float64)
    return MultivariateNormal(mu, cov).log_prob(x)


def ppca_maximum(x, latent_dim: int) -> float:
    """Tipping & Bishop's maximum of the pPCA log-likelihood, per datapoint."""
    x = x.double()
    d = x.shape[1]
    centred = x - x.mean(0)
    eig = torch.linalg.eigvalsh(centred.T @ centred / len(x)).flip(0)
    sigma2 = eig[latent_dim:].mean()
    return -0.5 * (
        d * math.log(2 * math.pi)
        + eig[:latent_dim].log().sum().item()
        + (d - latent_dim) * math.log(sigma2)
        + d
    )


def ppca_mle_fixed_noise(x, latent_dim: int, sigma: float):
    """Tipping & Bishop's MLE of W with the noise sigma held fixed: W = U_q max(Lambda_q -
    sigma^2, 0)^(1/2), orthogonal columns; directions with lambda_j <= sigma^2 get zero columns.

    Returns (W, mu, eigenvalues of the sample covariance, largest first).
    """
    x = x.double()
    mu = x.mean(0)
    centred = x - mu
    eig, vecs = torch.linalg.eigh(centred.T @ centred / len(x))
    eig, vecs = eig.flip(0), vecs.flip(1)
    scales = (eig[:latent_dim] - sigma**2).clamp(min=0).sqrt()
    return vecs[:, :latent_dim] * scales, mu, eig


def linear_vae(data_dim: int, latent_dim: int) -> VAE:
    """Linear-Gaussian VAE: linear encoder and decoder, normal likelihood with one shared scale."""
    return build_vae(
        data_dim, latent_dim, (), likelihood="normal", likelihood_options={"scale": "shared"}
    )


def set_exact_posterior(
    vae: VAE, weight, mu, sigma, scale_factor: float = 1.0, loc_shift: float = 0.0
) -> VAE:
    """Make ``vae`` the pPCA model (W, mu, sigma) with q(z|x) its exact posterior.

    W must have orthogonal columns, so the posterior covariance sigma^2 M^-1 is diagonal.
    ``scale_factor`` and ``loc_shift`` spoil the encoder on purpose.
    """
    weight, mu = weight.double(), mu.double()
    m = weight.T @ weight + sigma**2 * torch.eye(weight.shape[1], dtype=torch.float64)
    assert torch.allclose(m, torch.diag(torch.diag(m))), "W needs orthogonal columns"
    m_inv = torch.linalg.inv(m)
    post_scale = (sigma**2 * torch.diag(m_inv)).sqrt() * scale_factor
    vae.double()
    with torch.no_grad():
        vae.decoder.out.weight.copy_(weight)
        vae.decoder.out.bias.copy_(mu)
        vae.encoder.loc.weight.copy_(m_inv @ weight.T)
        vae.encoder.loc.bias.copy_(-(m_inv @ weight.T @ mu) + loc_shift)
        vae.encoder.raw_scale.weight.zero_()
        vae.encoder.raw_scale.bias.copy_(torch.log(torch.expm1(post_scale - MIN_SCALE)))
        constraint = constraints.greater_than(MIN_SCALE_LIKELIHOOD)
        vae.likelihood.scale_unconstrained.copy_(
            transform_to(constraint).inv(torch.tensor(float(sigma), dtype=torch.float64))
        )
    return vae


def learned_ppca(vae: VAE) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(W, mu, sigma) of a trained linear VAE."""
    return (
        vae.decoder.out.weight.detach().double(),
        vae.decoder.out.bias.detach().double(),
        float(vae.likelihood.scale.detach()),
    )

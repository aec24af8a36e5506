"""Training throughput of pyro-vae's SVI step against a hand-written PyTorch VAE.

Both fit the same model (MLP 784-400-20, Bernoulli likelihood, analytic KL, Adam 1e-3) on the
same data with the same epoch structure (dynamic binarization, a random permutation, minibatch
steps). pyro-vae runs ``pyro_vae.inference.fit`` with ``elbo-analytic-kl``; the reference is a
plain PyTorch loop written here. Epochs of the two alternate (interleaved repeats) so machine
noise hits both alike; the script reports medians, their ratio, and each step's achieved FLOP/s
against the fp32 matmul peak measured in the same run. Each batch size is measured for each
way of running pyro-vae's loss: as Pyro runs it (``eager``), traced with TorchScript (``jit``)
and compiled with ``torch.compile`` (``compile``).

    python benchmarks/speed.py --batch-sizes 128 1024 --repeats 7 --out docs/speed.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import pyro
import torch
from machine import LOSSES, describe, matmul_peak
from pyro_vae.inference import SVIConfig, fit
from pyro_vae.models import build_vae
from torch import nn
from torch.nn.functional import binary_cross_entropy_with_logits, softplus

from pyro_vae.data import load_dataset

DATA_DIM, HIDDEN, LATENT = 784, 400, 20


class ReferenceVAE(nn.Module):
    """Kingma & Welling's VAE written directly in PyTorch, with the networks of pyro-vae."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(DATA_DIM, HIDDEN), nn.ReLU())
        self.loc = nn.Linear(HIDDEN, LATENT)
        self.raw_scale = nn.Linear(HIDDEN, LATENT)
        self.dec = nn.Sequential(nn.Linear(LATENT, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, DATA_DIM))

    def loss(self, x: torch.Tensor, num_data: int) -> torch.Tensor:
        """-ELBO of the minibatch scaled to the data set, as pyro-vae's data plate scales it."""
        h = self.enc(x)
        loc, scale = self.loc(h), softplus(self.raw_scale(h)) + 1e-6
        z = loc + scale * torch.randn_like(loc)
        recon = binary_cross_entropy_with_logits(self.dec(z), x, reduction="sum")
        kl = 0.5 * (loc.pow(2) + scale.pow(2) - 1).sum() - scale.log().sum()
        return (recon + kl) * (num_data / x.shape[0])


def reference_epoch(
    model: ReferenceVAE, optimizer: torch.optim.Optimizer, x: torch.Tensor, batch: int, gen
) -> float:
    start = time.perf_counter()
    data = torch.bernoulli(x, generator=gen)
    order = torch.randperm(len(x), generator=gen, device=x.device)
    total = torch.zeros((), device=x.device)
    for step in range(-(-len(x) // batch)):
        loss = model.loss(data[order[step * batch : (step + 1) * batch]], len(x))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.detach()
    total.item()  # one host sync per epoch, as in fit
    if x.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def step_flops_per_image() -> float:
    """Matmul FLOPs of one training step per image: forward 2 x MACs, backward about twice."""
    macs = DATA_DIM * HIDDEN + 2 * HIDDEN * LATENT + LATENT * HIDDEN + HIDDEN * DATA_DIM
    return 3 * 2 * macs


def measure(x: torch.Tensor, batch: int, repeats: int, seed: int, loss: str) -> dict:
    """One pyro-vae fit of ``repeats + 1`` epochs, a reference epoch after each of its epochs."""
    torch.manual_seed(seed)
    pyro.set_rng_seed(seed)
    vae = build_vae(DATA_DIM, LATENT, (HIDDEN,)).to(x.device)
    reference = ReferenceVAE().to(x.device)
    ref_opt = torch.optim.Adam(reference.parameters(), lr=1e-3)
    gen = torch.Generator(device=x.device).manual_seed(seed)
    config = SVIConfig(
        objective="elbo-analytic-kl",
        batch_size=batch,
        lr=1e-3,
        epochs=repeats + 1,
        **LOSSES[loss],
    )
    ref_seconds = []

    def reference_turn(_result, _state):  # runs between pyro-vae's epochs, outside its timing
        ref_seconds.append(reference_epoch(reference, ref_opt, x, batch, gen))

    result = fit(vae, x, config=config, binarization="dynamic", seed=seed, on_epoch=reference_turn)
    # the first pair warms up (and holds the one-off trace or compilation) and is dropped
    pyro_seconds, ref_seconds = result.epoch_seconds[1:], ref_seconds[1:]
    pyro_median, ref_median = statistics.median(pyro_seconds), statistics.median(ref_seconds)
    return {
        "batch_size": batch,
        "loss": loss,
        "images": len(x),
        "pyro_vae_images_per_s": len(x) / pyro_median,
        "reference_images_per_s": len(x) / ref_median,
        "ratio_time_pyro_over_reference": pyro_median / ref_median,
        # each pyro-vae epoch against the reference epoch right after it (the pairs share the
        # machine's state of the moment), beside the ratio of the two medians above
        "paired_ratio_median": statistics.median(
            p / r for p, r in zip(pyro_seconds, ref_seconds, strict=True)
        ),
        "pyro_vae_epoch_s": pyro_seconds,
        "reference_epoch_s": ref_seconds,
        "pyro_vae_flops_per_s": step_flops_per_image() * len(x) / pyro_median,
        "reference_flops_per_s": step_flops_per_image() * len(x) / ref_median,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 1024])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--images", type=int, default=20000, help="mnist5k tiled to this many")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--losses", nargs="+", choices=list(LOSSES), default=list(LOSSES), help="pyro-vae variants"
    )
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    args = parser.parse_args()
    device = torch.device(args.device)
    base = load_dataset("mnist5k").train_x
    x = base.repeat(-(-args.images // len(base)), 1)[: args.images].to(device)
    peak = matmul_peak(device)
    rows = [
        measure(x, batch, args.repeats, args.seed, loss)
        for batch in args.batch_sizes
        for loss in args.losses
    ]
    for row in rows:
        row["matmul_peak_flops_per_s"] = peak
        row["pyro_vae_share_of_peak"] = row["pyro_vae_flops_per_s"] / peak
    report = {**describe(device), "rows": rows}
    print(f"fp32 matmul peak: {peak / 1e9:.1f} GFLOP/s on {device}")
    print(
        "| batch | loss | pyro-vae img/s | reference img/s | time ratio | "
        "paired ratio, median | pyro-vae % of peak |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['batch_size']} | {r['loss']} | "
            f"{r['pyro_vae_images_per_s']:.0f} | "
            f"{r['reference_images_per_s']:.0f} | {r['ratio_time_pyro_over_reference']:.3f} | "
            f"{r['paired_ratio_median']:.3f} | "
            f"{100 * r['pyro_vae_share_of_peak']:.1f} % |"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Training throughput of pyro-vae's SVI step against a hand-written PyTorch VAE.

Both fit the same model (MLP 784-400-20, or with ``--network conv`` pyro-vae's ``conv``
networks with their defaults; Bernoulli likelihood, analytic KL, Adam 1e-3) on the same data
with the same epoch structure (dynamic binarization, a random permutation, minibatch steps).
pyro-vae runs ``pyro_vae.inference.fit`` with ``elbo-analytic-kl``; the reference is a plain
PyTorch loop written here, run twice: as written (``reference``) and with its loss compiled by
``torch.compile`` (``compiled reference``), so a compiled pyro-vae step is also measured
against a compiled hand-written one. Epochs alternate (interleaved repeats: a pyro-vae epoch,
then one of each reference) so machine noise hits all alike; the script reports medians, their
ratios, and each step's achieved FLOP/s against the fp32 matmul peak measured in the same run.
Each batch size is measured for each way of running pyro-vae's loss: as Pyro runs it
(``eager``), traced with TorchScript (``jit``) and compiled with ``torch.compile``
(``compile``).

    python benchmarks/speed.py --batch-sizes 128 1024 --repeats 7 --out docs/speed.json
    python benchmarks/speed.py --network conv --repeats 5 --images 10000 --out speed-conv.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import pyro
import torch
from machine import (
    DATA_DIM,
    HIDDEN,
    LATENT,
    LOSSES,
    REFERENCES,
    SIDE,
    describe,
    matmul_peak,
    smoke_caps,
    step_macs_per_image,
)
from pyro_vae.inference import SVIConfig, fit
from pyro_vae.models import build_vae

from pyro_vae import smoke
from pyro_vae.data import BINARIZATIONS, load_dataset


class Reference:
    """A hand-written VAE of ``network``, its optimizer and its loss (as written, or compiled
    with ``torch.compile``)."""

    def __init__(self, network: str, device: torch.device, compiled: bool) -> None:
        self.model = REFERENCES[network]().to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.loss = torch.compile(self.model.loss) if compiled else self.model.loss


def reference_epoch(reference: Reference, x: torch.Tensor, batch: int, gen) -> float:
    model_loss, optimizer = reference.loss, reference.optimizer
    start = time.perf_counter()
    data = torch.bernoulli(x, generator=gen)
    order = torch.randperm(len(x), generator=gen, device=x.device)
    total = torch.zeros((), device=x.device)
    for step in range(-(-len(x) // batch)):
        loss = model_loss(data[order[step * batch : (step + 1) * batch]], len(x))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.detach()
    total.item()  # one host sync per epoch, as in fit
    if x.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def step_flops_per_image(network: str) -> float:
    """Matmul and convolution FLOPs of one training step per image: forward 2 x MACs, backward
    about twice that."""
    return 3 * 2 * step_macs_per_image(network)


def build(network: str) -> torch.nn.Module:
    """pyro-vae's VAE with the networks the reference of ``network`` writes by hand."""
    if network == "mlp":
        return build_vae(DATA_DIM, LATENT, (HIDDEN,))
    return build_vae(DATA_DIM, LATENT, network=network, image_shape=(SIDE, SIDE))


def measure(
    x: torch.Tensor, batch: int, repeats: int, seed: int, loss: str, network: str = "mlp"
) -> dict:
    """One pyro-vae fit of ``repeats + 1`` epochs, an epoch of each reference after each of its
    epochs."""
    torch.manual_seed(seed)
    pyro.set_rng_seed(seed)
    vae = build(network).to(x.device)
    references = {
        "reference": Reference(network, x.device, compiled=False),
        "compiled_reference": Reference(network, x.device, compiled=True),
    }
    gen = torch.Generator(device=x.device).manual_seed(seed)
    config = SVIConfig(
        objective="elbo-analytic-kl",
        batch_size=batch,
        lr=1e-3,
        epochs=repeats + 1,
        **LOSSES[loss],
    )
    ref_seconds: dict[str, list[float]] = {name: [] for name in references}

    def reference_turn(_result, _state):  # runs between pyro-vae's epochs, outside its timing
        for name, reference in references.items():
            ref_seconds[name].append(reference_epoch(reference, x, batch, gen))

    result = fit(
        vae,
        x,
        config=config,
        binarization=BINARIZATIONS["dynamic"],
        seed=seed,
        on_epoch=reference_turn,
    )
    # the first round warms up (and holds the one-off trace or compilations) and is dropped
    pyro_seconds = result.epoch_seconds[1:]
    pyro_median = statistics.median(pyro_seconds)
    flops = step_flops_per_image(network) * len(x)
    row = {
        "network": network,
        "batch_size": batch,
        "loss": loss,
        "images": len(x),
        "pyro_vae_images_per_s": len(x) / pyro_median,
        "pyro_vae_epoch_s": pyro_seconds,
        "pyro_vae_flops_per_s": flops / pyro_median,
    }
    for name, seconds in ref_seconds.items():
        seconds = seconds[1:]
        ref_median = statistics.median(seconds)
        row.update(
            {
                f"{name}_images_per_s": len(x) / ref_median,
                f"{name}_epoch_s": seconds,
                f"{name}_flops_per_s": flops / ref_median,
                f"ratio_time_pyro_over_{name}": pyro_median / ref_median,
                f"paired_ratio_over_{name}_median": statistics.median(
                    p / r for p, r in zip(pyro_seconds, seconds, strict=True)
                ),
            }
        )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", choices=list(REFERENCES), default="mlp")
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
    smoke_caps(args, images=600, repeats=1, batch_sizes=200)
    if smoke.active():  # the first batch size alone runs every variant and reference
        args.batch_sizes = args.batch_sizes[:1]
    device = torch.device(args.device)
    base = load_dataset("mnist5k").train_x
    x = base.repeat(-(-args.images // len(base)), 1)[: args.images].to(device)
    peak = matmul_peak(device)
    rows = [
        measure(x, batch, args.repeats, args.seed, loss, args.network)
        for batch in args.batch_sizes
        for loss in args.losses
    ]
    for row in rows:
        row["matmul_peak_flops_per_s"] = peak
        row["pyro_vae_share_of_peak"] = row["pyro_vae_flops_per_s"] / peak
    report = {**describe(device), "rows": rows}
    print(f"fp32 matmul peak: {peak / 1e9:.1f} GFLOP/s on {device}")
    print(
        "| batch | loss | pyro-vae img/s | reference img/s | compiled reference img/s | "
        "time ratio (paired) over reference | over compiled reference | pyro-vae % of peak |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['batch_size']} | {r['loss']} | {r['pyro_vae_images_per_s']:.0f} | "
            f"{r['reference_images_per_s']:.0f} | {r['compiled_reference_images_per_s']:.0f} | "
            f"{r['ratio_time_pyro_over_reference']:.3f} "
            f"({r['paired_ratio_over_reference_median']:.3f}) | "
            f"{r['ratio_time_pyro_over_compiled_reference']:.3f} "
            f"({r['paired_ratio_over_compiled_reference_median']:.3f}) | "
            f"{100 * r['pyro_vae_share_of_peak']:.1f} % |"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()

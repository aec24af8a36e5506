"""IWAE step time: the K particles drawn in a plate against the minibatch repeated K times.

Programs whose model and guide take the ``particles`` keyword draw each datapoint's K
particles in a plate, so the encoder runs once per datapoint; a program without it gets the
minibatch repeated K times (the encoder runs K times). Both give the same loss and gradients
(tests/test_iwae.py). This script times one IWAE step (loss, backward, Adam) both ways,
interleaved, for the VAE itself and for ``PointWeights`` (the MAP decoder of
``train --weight-prior``), on mnist5k's training images binarized once.

    python benchmarks/iwae_plate.py --particles 5 --batch-size 128 --repeats 7
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from machine import describe, smoke_caps, write_report
from pyro_vae.inference.iwae import ImportanceWeightedELBO
from pyro_vae.inference.programs import PointWeights
from pyro_vae.models import build_vae

from pyro_vae.data import load_dataset

PROGRAMS = {
    "vae": lambda vae: vae,
    "point-weights": PointWeights,
}


def without_particles_keyword(fn: Any) -> Any:
    """The same program, hidden behind ``*args, **kwargs``: IWAE repeats the minibatch."""
    return lambda *args, **kwargs: fn(*args, **kwargs)


def time_steps(program: Any, paths: dict, x: torch.Tensor, args: argparse.Namespace) -> dict:
    """Median seconds per step for each path, over interleaved repeats (the first dropped)."""
    optimizer = torch.optim.Adam(program.parameters(), lr=1e-3)
    objective = ImportanceWeightedELBO(args.particles)
    batch, n = args.batch_size, x.shape[0]
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(args.repeats + 1):
        for name, (model, guide) in paths.items():
            start = time.perf_counter()
            for step in range(args.steps):
                first = (step * batch) % (n - batch + 1)
                indices = torch.arange(first, first + batch)
                loss = objective.differentiable_loss(
                    model, guide, x[indices], num_data=n, indices=indices
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            times[name].append((time.perf_counter() - start) / args.steps)
    return {name: {"all": t, "median": statistics.median(t[1:])} for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--particles", type=int, default=5, help="K")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=400)
    parser.add_argument("--latent", type=int, default=20)
    parser.add_argument("--steps", type=int, default=20, help="steps per timed repeat")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="JSON file for the figures")
    args = parser.parse_args()
    smoke_caps(args, hidden=16, latent=2, steps=2, repeats=1)

    torch.manual_seed(args.seed)
    x = torch.bernoulli(load_dataset("mnist5k").train_x)
    rows = []
    for name, make in PROGRAMS.items():
        weight_prior = None if name == "vae" else "normal"
        program = make(
            build_vae(x.shape[1], args.latent, (args.hidden,), weight_prior=weight_prior)
        )
        program.guide(x[: args.batch_size])  # an autoguide's first call runs the model
        paths = {
            "plate": (program.model, program.guide),
            "repeated": tuple(map(without_particles_keyword, (program.model, program.guide))),
        }
        measured = time_steps(program, paths, x, args)
        plate, repeated = measured["plate"]["median"], measured["repeated"]["median"]
        rows.append(
            {
                "program": name,
                "ms_plate": 1e3 * plate,
                "ms_repeated": 1e3 * repeated,
                "speedup": repeated / plate,
                "seconds": measured,
            }
        )
    report = {
        **describe(torch.device("cpu")),
        "args": vars(args) | {"out": str(args.out)},
        "rows": rows,
    }
    print(f"K = {args.particles}, batch {args.batch_size}, 784-{args.hidden}-{args.latent}")
    print("| program | plate (ms/step) | repeated (ms/step) | repeated / plate |")
    print("|---|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['program']} | {r['ms_plate']:.1f} | {r['ms_repeated']:.1f} "
            f"| {r['speedup']:.2f} |"
        )
    write_report(args.out, report)


if __name__ == "__main__":
    main()

"""The conv VAE against the MLP at equal epochs on one data set.

Trains the default model (Bernoulli, dynamic binarization, z = 20, seed 0) once per network in
``--networks``, then estimates test log p(x) and the ELBO by importance sampling (K =
``--is-samples``) on ``--num-test`` test images spread evenly over the test set (through
``diagnose``, which also gives the k-hat share), and prints one table with each network's
parameter count, seconds per epoch, and its log p(x) minus the first network's, paired over the
same test images with its standard error. The training run's own estimate uses only
``--train-is-samples`` draws (it covers every test image and would dominate the time of a conv
run at K = 1,000). A network whose run folder already holds a diagnosis is read, not run again::

    python benchmarks/networks.py --dataset fashion-mnist --out bench-runs/networks-fashion
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path
from typing import Any

import torch
from machine import describe, smoke_caps, write_report

from pyro_vae import TrainConfig, smoke, train
from pyro_vae.diagnose import DiagnoseConfig, diagnose
from pyro_vae.runs import load_run


def run_network(network: str, args: argparse.Namespace) -> tuple[dict[str, Any], list[float]]:
    """Train and diagnose one network (or read what an earlier run left); its row and its
    log p(x) per test image."""
    out = Path(args.out) / network
    report_path = out / "diagnostics" / "diagnostics.json"
    if not (out / "metrics.json").exists():
        config = TrainConfig(
            dataset=args.dataset,
            network=network,
            epochs=args.epochs,
            seed=args.seed,
            latent_dim=args.latent_dim,
            is_samples=args.train_is_samples,
            device=args.device,
        )
        train(smoke.train_config(config), out, progress=False)  # as given unless smoke is on
    if not report_path.exists():
        checks = DiagnoseConfig(
            num_test=args.num_test, is_samples=args.is_samples, gap_images=0, nuts_images=0
        )
        diagnose(out, checks, progress=False)
    metrics = json.loads((out / "metrics.json").read_text())
    report = json.loads(report_path.read_text())
    importance = report["importance"]
    row = {
        "network": network,
        "dataset": args.dataset,
        "epochs": metrics["epochs"],
        "parameters": sum(p.numel() for p in load_run(out, device="cpu").vae.parameters()),
        "test_images": len(report["test_images"]),
        "is_samples": importance["is_samples"],
        "test_log_likelihood": importance["log_likelihood"],
        "test_elbo": importance["elbo"],
        "khat_bad_share": importance["khat_shares"]["bad (> 0.7)"],
        "train_elbo": metrics["train"]["elbo"],
        "seconds_per_epoch": metrics["wall_time_s"]["train"] / metrics["epochs"],
    }
    return row, importance["per_image"]["log_likelihood"]


def paired_difference(first: list[float], other: list[float]) -> dict[str, float]:
    """Mean and standard error of ``other - first`` over the same test images."""
    differences = [b - a for a, b in zip(first, other, strict=True)]
    spread = statistics.stdev(differences) if len(differences) > 1 else math.nan
    return {
        "mean": statistics.fmean(differences),
        "standard_error": spread / math.sqrt(len(differences)),
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| network | parameters | test log p(x) | minus the first (paired, ± s.e.) | test ELBO "
        "| k̂ > 0.7 | train ELBO | s / epoch |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        minus = r.get("minus_first")
        paired = f"{minus['mean']:+.2f} ± {minus['standard_error']:.2f}" if minus else ""
        lines.append(
            f"| {r['network']} | {r['parameters']:,} | {r['test_log_likelihood']:.2f} | {paired} | "
            f"{r['test_elbo']:.2f} | {100 * r['khat_bad_share']:.1f} % | {r['train_elbo']:.2f} | "
            f"{r['seconds_per_epoch']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--networks", nargs="+", default=["mlp", "conv"])
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--out", default="bench-runs/networks", help="folder for the run folders")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--latent-dim", type=int, default=20)
    parser.add_argument("--is-samples", type=int, default=1000, help="K for log p(x)")
    parser.add_argument("--num-test", type=int, default=2000, help="test images estimated")
    parser.add_argument("--train-is-samples", type=int, default=10, help="K of train's estimate")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, help="write the rows and the machine here")
    args = parser.parse_args()
    smoke_caps(args, epochs=1, latent_dim=2, is_samples=200, num_test=50)
    rows, first = [], None
    for network in args.networks:
        row, per_image = run_network(network, args)
        if first is None:
            first = per_image
        else:
            row["minus_first"] = paired_difference(first, per_image)
        rows.append(row)
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    print(table(rows))
    write_report(args.json, {"machine": describe(torch.device(args.device)), "rows": rows})


if __name__ == "__main__":
    main()

"""What each variational family and gradient estimator changes on the default run.

Trains the default model (mnist5k, MLP 784-400-20, Bernoulli, dynamic binarization) once per
cell ``GUIDE:GRADIENT``, then diagnoses it, and prints one table: test log p(x) and ELBO (K =
1,000 on the 1,000 test images), the approximation and amortization gaps (on ``--gap-images``
images), the share of images with k-hat > 0.7, and seconds per training epoch. A cell whose
run folder already holds a diagnosis is read, not run again::

    python benchmarks/guides.py --out bench-runs/guides --json guides.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch
from machine import describe, smoke_caps, write_report

from pyro_vae import TrainConfig, smoke, train
from pyro_vae.diagnose import DiagnoseConfig, diagnose

CELLS = (
    "diagonal:reparam",
    "diagonal:stl",
    "full-rank:reparam",
    "full-rank:stl",
    "iaf:reparam",
    "semi-amortized:reparam",
)


def run_cell(cell: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train and diagnose one ``GUIDE:GRADIENT`` cell (or read what an earlier run left)."""
    guide, _, gradient = cell.partition(":")
    out = Path(args.out) / f"{guide}-{gradient}"
    report_path = out / "diagnostics" / "diagnostics.json"
    if not (out / "metrics.json").exists():
        config = TrainConfig(
            guide=guide,
            gradient=gradient,
            epochs=args.epochs,
            seed=args.seed,
            hidden=tuple(args.hidden),
            latent_dim=args.latent_dim,
            is_samples=args.is_samples,
        )
        train(config, out, progress=False)
    if not report_path.exists():
        checks = DiagnoseConfig(
            num_test=args.num_test,
            is_samples=args.is_samples,
            gap_images=args.gap_images,
            gap_steps=args.gap_steps,
            nuts_images=0,
        )
        diagnose(out, checks, progress=False)
    metrics = json.loads((out / "metrics.json").read_text())
    report = json.loads(report_path.read_text())
    gaps, importance = report["gaps"], report["importance"]
    return {
        "guide": guide,
        "gradient": gradient,
        "test_log_likelihood": metrics["test"]["log_likelihood"],
        "test_elbo": metrics["test"]["elbo"],
        "approximation_gap": gaps["approximation_gap"],
        "amortization_gap": gaps["amortization_gap"],
        "khat_bad_share": importance["khat_shares"]["bad (> 0.7)"],
        "seconds_per_epoch": metrics["wall_time_s"]["train"] / metrics["epochs"],
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| guide | gradient | test log p(x) | test ELBO | approximation gap | amortization gap "
        "| sum of gaps | k̂ > 0.7 | s / epoch |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        both = r["approximation_gap"] + r["amortization_gap"]
        lines.append(
            f"| {r['guide']} | {r['gradient']} | {r['test_log_likelihood']:.2f} | "
            f"{r['test_elbo']:.2f} | {r['approximation_gap']:.2f} | {r['amortization_gap']:.2f} "
            f"| {both:.2f} | {100 * r['khat_bad_share']:.1f} % | {r['seconds_per_epoch']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", nargs="+", default=CELLS, metavar="GUIDE:GRADIENT")
    parser.add_argument("--out", default="bench-runs/guides", help="folder for the run folders")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden", type=int, nargs="+", default=[400])
    parser.add_argument("--latent-dim", type=int, default=20)
    parser.add_argument("--is-samples", type=int, default=1000)
    parser.add_argument("--num-test", type=int, default=1000, help="test images diagnosed")
    parser.add_argument("--gap-images", type=int, default=50)
    parser.add_argument("--gap-steps", type=int, default=300)
    parser.add_argument("--json", type=Path, help="write the rows and the machine here")
    args = parser.parse_args()
    smoke_caps(args, epochs=1, hidden=16, latent_dim=2, is_samples=200, num_test=50,
               gap_images=2, gap_steps=5)  # fmt: skip
    if smoke.active() and len(args.cells) > 2:
        args.cells = args.cells[:1] + args.cells[-1:]
        print(f"{smoke.ENV} is set: the first and last cell only", file=sys.stderr)
    rows = []
    for cell in args.cells:
        rows.append(run_cell(cell, args))
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    print(table(rows))
    write_report(args.json, {"machine": describe(torch.device("cpu")), "rows": rows})


if __name__ == "__main__":
    main()

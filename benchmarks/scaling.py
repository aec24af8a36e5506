"""Seconds per training epoch against data set size and against network width.

Fits a Bernoulli VAE (analytic KL, Adam, batch 128, dynamic binarization) with
``pyro_vae.inference.fit`` on the first N training images of a data set (default
Fashion-MNIST, whose 60,000 images cover 1k ... 60k) and times the second epoch (the first
warms up). A second sweep varies the hidden width at fixed latent size and the latent size at
fixed width on 10,000 images. Writes the figures as JSON and a two-panel plot.

    python benchmarks/scaling.py --out docs/scaling.json --plot docs/scaling.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from machine import describe, smoke_caps
from pyro_vae.inference import SVIConfig, fit
from pyro_vae.models import build_vae

from pyro_vae.data import BINARIZATIONS, load_dataset

SIZES = (1000, 2000, 5000, 10000, 20000, 40000, 60000)
HIDDEN_WIDTHS = (100, 200, 400, 800, 1600)
LATENT_SIZES = (5, 10, 20, 40, 80)


def epoch_seconds(
    x: torch.Tensor, hidden: int, latent: int, batch: int, jit: bool, seed: int
) -> float:
    """Seconds of the second epoch of a fresh fit on ``x``."""
    torch.manual_seed(seed)
    vae = build_vae(x.shape[1], latent, (hidden,)).to(x.device)
    config = SVIConfig(objective="elbo-analytic-kl", batch_size=batch, epochs=2, jit=jit)
    dynamic = BINARIZATIONS["dynamic"]
    return fit(vae, x, config=config, binarization=dynamic, seed=seed).epoch_seconds[-1]


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    sizes = [r["images"] for r in report["by_size"]]
    seconds = [r["seconds"] for r in report["by_size"]]
    left.plot(sizes, seconds, "o-", label="measured")
    rate = seconds[-1] / sizes[-1]
    left.plot(
        sizes, [rate * n for n in sizes], "--", color="grey", label=f"linear through {sizes[-1]:,}"
    )
    left.set(xlabel="training images", ylabel="seconds per epoch", title="data set size")
    left.legend()
    for key, label in (("hidden", "hidden width (z = 20)"), ("latent", "latent size (h = 400)")):
        rows = report[f"by_{key}"]
        right.plot([r[key] for r in rows], [r["seconds"] for r in rows], "o-", label=label)
    right.set(
        xscale="log",
        xlabel="size",
        ylabel="seconds per epoch",
        title=f"network size, {report['width_images']} images",
    )
    right.legend()
    fig.suptitle(f"pyro-vae fit, batch {report['batch_size']}, {report['device']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--widths", type=int, nargs="+", default=list(HIDDEN_WIDTHS))
    parser.add_argument("--latents", type=int, nargs="+", default=list(LATENT_SIZES))
    parser.add_argument("--width-images", type=int, default=10000, help="images for width sweeps")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--jit", action="store_true", help="fit with the traced loss")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    parser.add_argument("--plot", type=Path, help="write the plot as PNG")
    args = parser.parse_args()
    smoke_caps(args, sizes=500, widths=16, latents=2, width_images=500)
    device = torch.device(args.device)
    x_all = load_dataset(args.dataset).train_x.to(device)
    sizes = [n for n in args.sizes if n <= len(x_all)]
    width_images = min(args.width_images, len(x_all))

    def seconds(n: int, hidden: int = 400, latent: int = 20) -> float:
        return epoch_seconds(x_all[:n], hidden, latent, args.batch_size, args.jit, args.seed)

    report = {
        **describe(device),
        "dataset": args.dataset,
        "batch_size": args.batch_size,
        "jit": args.jit,
        "by_size": [{"images": n, "seconds": seconds(n)} for n in sizes],
        "width_images": width_images,
        "by_hidden": [
            {"hidden": h, "seconds": seconds(width_images, hidden=h)} for h in args.widths
        ],
        "by_latent": [
            {"latent": z, "seconds": seconds(width_images, latent=z)} for z in args.latents
        ],
    }
    print("| images | s/epoch | s per 1k images |")
    print("|---:|---:|---:|")
    for r in report["by_size"]:
        print(f"| {r['images']} | {r['seconds']:.2f} | {1000 * r['seconds'] / r['images']:.3f} |")
    for key in ("hidden", "latent"):
        print(f"| {key} | s/epoch ({width_images} images) |\n|---:|---:|")
        for r in report[f"by_{key}"]:
            print(f"| {r[key]} | {r['seconds']:.2f} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    if args.plot:
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        plot(report, args.plot)


if __name__ == "__main__":
    main()

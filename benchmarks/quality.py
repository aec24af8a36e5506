"""Test NLL against the published Fashion-MNIST numbers, reproducible and resumable.

Trains each configuration with the published setting (Norouzi et al. 2020, "Exemplar VAE",
which follows the VampPrior paper's MLP: dynamic binarization, encoder and decoder with two
gated hidden layers of 300 units, z = 40, Adam 5e-4, batch 100, KL warm-up over 100 epochs)
through the same ``pyro_vae.training.train`` the CLI calls, then estimates the test NLL with
K = 5,000 importance samples per image (test images binarized once, fixed seed).

Every run lives in ``OUT/DATASET/CONFIG`` and checkpoints every epoch: run the same command
again (or with more ``--epochs``) to continue where it stopped. The scoring (tens of minutes
on a CPU) saves its per-image estimates every ``--score-block`` images and continues the same
way. Results go to
``OUT/DATASET/quality.json`` and a Markdown table ``OUT/DATASET/quality.md``.

``--peek N`` trains nothing: it scores the latest checkpoint of each configuration (a run
still going, say) on N evenly spaced test images, all with the same draws, and gives each
one's difference to the first configuration image by image (paired, so its standard error is
far smaller than that of either mean). It writes ``OUT/DATASET/peek-N.json``.

    python benchmarks/quality.py --dataset fashion-mnist --configs vae vamp --epochs 1000
    python benchmarks/quality.py --dataset mnist5k --epochs 500
    python benchmarks/quality.py --dataset fashion-mnist --configs vae vamp --peek 1000
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
from machine import LOSSES, smoke_caps
from pyro_vae.inference import evaluate

from pyro_vae.checkpoint import latest_checkpoint, load_checkpoint, write_json, write_text
from pyro_vae.config import TrainConfig
from pyro_vae.core.errors import ConfigError, PyroVAEError, TrainingInterrupted
from pyro_vae.data import evenly_spaced
from pyro_vae.runs import load_run
from pyro_vae.training import resume_config, train

#: The published setting every configuration shares.
PUBLISHED_SETTING: dict[str, Any] = {
    "binarization": "dynamic",
    "hidden": (300, 300),
    "layer": "gated",
    "latent_dim": 40,
    "lr": 5e-4,
    "batch_size": 100,
    "warmup_epochs": 100,
    "is_samples": 100,  # the training run's own quick estimate; the benchmark uses --samples
}

#: Configuration name -> (what differs from the published setting, published Fashion-MNIST NLL).
CONFIGS: dict[str, tuple[dict[str, Any], float | None]] = {
    "vae": ({"prior": "standard-normal", "objective": "elbo-analytic-kl"}, 228.70),
    "vamp": ({"prior": "vamp", "prior_options": {"components": 500}}, 227.35),
    "vamp-iwae": (
        {
            "prior": "vamp",
            "prior_options": {"components": 500},
            "objective": "iwae",
            "particles": 5,
        },
        None,
    ),
}
#: Per-image estimates that ``score`` keeps, block by block (fields of ``Evaluation``).
PER_IMAGE = ("log_likelihood", "elbo", "kl")

#: Best published number (Exemplar VAE); our best configuration should be below it.
EXEMPLAR_VAE = 226.75


def train_config(
    dataset: str, name: str, epochs: int, device: str, seed: int, loss: str
) -> TrainConfig:
    """The configuration ``name`` in the published setting."""
    changes, _ = CONFIGS[name]
    return TrainConfig(
        dataset=dataset,
        epochs=epochs,
        device=device,
        seed=seed,
        **LOSSES[loss],
        **PUBLISHED_SETTING,
        **changes,
    )


def run_config(dataset: str, name: str, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Train (or continue) one configuration, then estimate its test NLL; returns its row."""
    folder = out / name
    resume = (folder / "checkpoint.pt").exists()
    if resume:
        config = resume_config(folder, epochs=args.epochs, device=args.device, **LOSSES[args.loss])
    else:
        config = train_config(dataset, name, args.epochs, args.device, args.seed, args.loss)
    done = (
        len(load_checkpoint(latest_checkpoint(folder))["fit"]["history"]["losses"]) if resume else 0
    )
    metrics_path = folder / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    # a run stopped part-way leaves the metrics of an earlier, shorter run behind
    if done < args.epochs or metrics.get("epochs") != done:
        todo = f"training epochs {done + 1}..{args.epochs}" if done < args.epochs else "metrics"
        print(f"{dataset}/{name}: {todo}", flush=True)
        train(config, folder, resume=resume, progress=not args.quiet)
        metrics = json.loads(metrics_path.read_text())
    nll_path = folder / f"nll-K{args.samples}.json"
    cached = json.loads(nll_path.read_text()) if nll_path.exists() else {}
    if cached.get("epochs") != metrics["epochs"]:
        print(f"{dataset}/{name}: test NLL with K={args.samples}", flush=True)
        cached = score(folder, args)
        write_json(nll_path, cached)
    _, published = CONFIGS[name]
    return {
        "config": name,
        "prior": config.prior,
        "objective": config.objective,
        "particles": config.particles,
        "train_seconds": metrics["wall_time_s"]["train"],
        "published_nll": published if dataset == "fashion-mnist" else None,
        **cached,
    }


def score(folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The K-sample test estimates of the run in ``folder``, summarised over the test images.

    Images are scored in blocks of ``args.score_block``, each with draws seeded by its first
    image, and every finished block is added to ``nll-K<K>-images.json`` (per-image log p(x),
    ELBO and KL) at once: a scoring that stops continues with the next block, and its numbers
    are those of an uninterrupted one.
    """
    run = load_run(folder, device=args.device)
    images_path = folder / f"nll-K{args.samples}-images.json"
    saved = json.loads(images_path.read_text()) if images_path.exists() else {}
    identity = {"epochs": run.epochs, "is_samples": args.samples, "seed": args.seed}
    # nothing saved, or saved for an earlier checkpoint or with other draws: start afresh
    if any(saved.get(key) != value for key, value in identity.items()):
        saved = {**identity, "seconds": 0.0}
        saved.update({key: [] for key in PER_IMAGE})
    total = len(run.test_x)
    for first in range(len(saved["log_likelihood"]), total, args.score_block):
        rows = slice(first, first + args.score_block)
        labels = None if run.test_labels is None else run.test_labels[rows]
        torch.manual_seed(args.seed + first)
        start = time.perf_counter()
        result = evaluate(
            run.vae, run.test_x[rows], labels, is_samples=args.samples, **LOSSES[args.loss]
        )
        saved["seconds"] += time.perf_counter() - start
        for key in PER_IMAGE:
            saved[key] += getattr(result, key).tolist()
        write_json(images_path, saved)
        if not args.quiet:
            print(f"  {first + len(result.elbo)} of {total} test images scored", flush=True)
    values = {key: torch.tensor(saved[key], dtype=torch.float64) for key in PER_IMAGE}
    nll = -values["log_likelihood"]
    return {
        "epochs": run.epochs,
        "is_samples": args.samples,
        "test_images": len(nll),
        "nll": nll.mean().item(),
        "nll_se": (nll.std() / math.sqrt(len(nll))).item(),
        "elbo": values["elbo"].mean().item(),
        "kl": values["kl"].mean().item(),
        "seconds": saved["seconds"],
    }


def peek(dataset: str, out: Path, images: int, args: argparse.Namespace) -> str:
    """Score each configuration's latest checkpoint on ``images`` test images; paired table."""
    scored: dict[str, dict[str, Any]] = {}
    per_image: dict[str, torch.Tensor] = {}
    lines = [
        f"Test NLL on {images} evenly spaced {dataset} test images, K = {args.samples}, at each "
        "run's latest checkpoint; the difference is paired, image by image, with the first.",
        "",
        "| config | epochs | test NLL | minus the first config's |",
        "|---|---:|---:|---:|",
    ]
    for name in args.configs:
        folder = out / name
        if not (folder / "checkpoint.pt").exists():
            lines.append(f"| {name} | no checkpoint in {folder} | | |")
            continue
        run = load_run(folder, device=args.device)
        rows = evenly_spaced(len(run.test_x), images).to(run.test_x.device)
        labels = None if run.test_labels is None else run.test_labels[rows]
        torch.manual_seed(args.seed)  # the same draws for every configuration
        start = time.perf_counter()
        result = evaluate(
            run.vae, run.test_x[rows], labels, is_samples=args.samples, **LOSSES[args.loss]
        )
        nll = -result.log_likelihood.cpu()
        first = next(iter(per_image.values()), nll)
        diff = nll - first
        per_image[name] = nll
        scored[name] = {
            "epochs": run.epochs,
            "test_images": len(nll),
            "nll": nll.mean().item(),
            "nll_se": (nll.std() / math.sqrt(len(nll))).item(),
            "minus_first": diff.mean().item(),
            "minus_first_se": (diff.std() / math.sqrt(len(nll))).item(),
            "seconds": time.perf_counter() - start,
        }
        r = scored[name]
        paired = (
            f"{r['minus_first']:+.2f} +- {r['minus_first_se']:.2f}" if len(per_image) > 1 else ""
        )
        lines.append(f"| {name} | {r['epochs']} | {r['nll']:.2f} +- {r['nll_se']:.2f} | {paired} |")
    write_json(
        out / f"peek-{images}.json",
        {
            "images": images,
            "is_samples": args.samples,
            "first": next(iter(per_image), None),
            "configs": scored,
        },
    )
    return "\n".join(lines) + "\n"


def table(dataset: str, rows: list[dict[str, Any]]) -> str:
    """The results as Markdown, with the published numbers beside ours."""
    lines = [
        f"Test NLL on {dataset} (dynamic binarization; nats per image, K importance samples; "
        "mean +- standard error over the test images).",
        "",
        "| config | epochs | train time | K | test NLL | published | ours - published |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        published = r["published_nll"]
        diff = f"{r['nll'] - published:+.2f}" if published is not None else ""
        lines.append(
            f"| {r['config']} | {r['epochs']} | {r['train_seconds'] / 60:.0f} min | "
            f"{r['is_samples']} | {r['nll']:.2f} +- {r['nll_se']:.2f} | "
            f"{published if published is not None else ''} | {diff} |"
        )
    if dataset == "fashion-mnist":
        best = min(r["nll"] for r in rows)
        lines += ["", f"Best: {best:.2f}; Exemplar VAE (published best): {EXEMPLAR_VAE}."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist", help="fashion-mnist or mnist5k")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--epochs", type=int, default=500, help="train each up to this many")
    parser.add_argument("--samples", type=int, default=5000, help="K for the test NLL")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("bench-runs/quality"))
    parser.add_argument(
        "--loss",
        choices=list(LOSSES),
        default="jit",
        help="how the loss and the scoring run: eager Pyro, traced with TorchScript (default), "
        "or compiled with torch.compile (tens of seconds to compile per run)",
    )
    parser.add_argument(
        "--score-block",
        type=int,
        default=1000,
        metavar="N",
        help="test images per saved block of the K-sample scoring (a stopped scoring resumes)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument(
        "--peek",
        type=int,
        metavar="N",
        help="train nothing; score the latest checkpoints on N test images, paired",
    )
    args = parser.parse_args()
    smoke_caps(args, epochs=1, samples=20, peek=20)
    out = args.out / args.dataset
    rows = []
    try:
        if args.score_block < 1:
            raise ConfigError(f"--score-block must be at least 1, not {args.score_block}")
        if args.peek is not None:
            if args.peek < 2:
                raise ConfigError(f"--peek needs at least 2 test images, not {args.peek}")
            print(peek(args.dataset, out, args.peek, args), end="")
            return 0
        for name in args.configs:
            rows.append(run_config(args.dataset, name, out, args))
            write_json(out / "quality.json", rows)
            write_text(out / "quality.md", table(args.dataset, rows))
    except TrainingInterrupted as stopped:
        print(f"stopped; run the same command to continue ({stopped})", file=sys.stderr)
        return 130
    except KeyboardInterrupt:  # while scoring: the finished blocks are saved
        print("stopped; run the same command to continue", file=sys.stderr)
        return 130
    except PyroVAEError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(table(args.dataset, rows), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())

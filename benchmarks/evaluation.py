"""Throughput of the importance-sampled NLL (``pyro_vae.inference.evaluate``) with large K.

Estimates log p(x) with K importance samples per image for a 784-400-20 Bernoulli VAE on
mnist5k test images (tiled to ``--images``), in chunks of at most ``--max-elements`` floats,
and reports images/s, samples/s, the matmul FLOP/s achieved against the fp32 matmul peak
measured in the same run, and the peak memory the estimate added. pyro-vae runs eager, with
``jit=True`` (traced) and with ``compile=True`` (compiled); the same estimate written directly
in PyTorch (same networks, chunks and arithmetic) runs beside them as the ideal, as written
(``reference``) and with its per-chunk work compiled by ``torch.compile``
(``compiled_reference``), so the compiled estimate meets a compiled ideal. FLOPs count
the useful work only: the encoder once per image and the decoder once per sample. Throughput
does not depend on the weights, so the VAEs are used as initialised.

    python benchmarks/evaluation.py --images 10000 --samples 5000 --out docs/evaluation.json
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import time
from collections.abc import Callable
from pathlib import Path

import pyro
import torch
from machine import LOSSES, ReferenceVAE, describe, matmul_peak, smoke_caps
from pyro_vae.inference import evaluate
from pyro_vae.inference.estimators import MAX_ELEMENTS, chunk_shape
from pyro_vae.models import build_vae
from torch.nn.functional import softplus

from pyro_vae.data import load_dataset

DATA_DIM, HIDDEN, LATENT = 784, 400, 20


def sample_flops() -> float:
    """Matmul FLOPs of one importance sample: the decoder's forward pass."""
    return 2 * (LATENT * HIDDEN + HIDDEN * DATA_DIM)


def image_flops() -> float:
    """Matmul FLOPs needed once per image: the encoder's forward pass."""
    return 2 * (DATA_DIM * HIDDEN + 2 * HIDDEN * LATENT)


def peak_memory_bytes(device: torch.device) -> int:
    """Peak memory so far: the CUDA allocator's on a GPU, the process's maximum RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


LOG_NORMAL = -0.5 * math.log(2 * math.pi)


def chunk_log_weights(
    model: ReferenceVAE, loc: torch.Tensor, scale: torch.Tensor, sign: torch.Tensor, k: int
) -> torch.Tensor:
    """log p(x, z) - log q(z|x) for ``k`` draws per image of one chunk, ``(k, images)``."""
    eps = torch.randn(k, *loc.shape, device=loc.device)
    z = loc + scale * eps
    log_px = -softplus(sign * model.dec(z)).sum(-1)
    log_pz = (LOG_NORMAL - 0.5 * z.pow(2)).sum(-1)
    log_qz = (LOG_NORMAL - 0.5 * eps.pow(2) - scale.log()).sum(-1)
    return (log_px + log_pz - log_qz).double()


@torch.no_grad()
def reference_nll(
    model: ReferenceVAE,
    x: torch.Tensor,
    samples: int,
    max_elements: int,
    log_weights: Callable[..., torch.Tensor] = chunk_log_weights,
) -> torch.Tensor:
    """The same importance-sampled log p(x), written directly in PyTorch: the ideal to match.

    Chunks as :func:`~pyro_vae.inference.evaluate` does (:func:`chunk_shape`);
    ``log_weights`` computes each chunk (``torch.compile(chunk_log_weights)`` to compile it).
    """
    batch, per_chunk = chunk_shape(len(x), DATA_DIM, samples, None, max_elements)
    result = torch.empty(len(x), dtype=torch.float64, device=x.device)
    for start in range(0, len(x), batch):
        xb = x[start : start + batch]
        h = model.enc(xb)
        loc, scale = model.loc(h), softplus(model.raw_scale(h)) + 1e-6
        sign = 1 - 2 * xb
        lse = torch.full((len(xb),), -math.inf, dtype=torch.float64, device=x.device)
        for done in range(0, samples, per_chunk):
            log_w = log_weights(model, loc, scale, sign, min(per_chunk, samples - done))
            lse = torch.logaddexp(lse, torch.logsumexp(log_w, dim=0))
        result[start : start + batch] = lse - math.log(samples)
    return result


def timed(fn: Callable[[], torch.Tensor]) -> tuple[float, float]:
    """(seconds, mean NLL) of one estimate; reading the result waits for the device."""
    start = time.perf_counter()
    nll = -fn().mean().item()
    return time.perf_counter() - start, nll


def measure(x: torch.Tensor, samples: int, max_elements: int, peak: float) -> dict:
    vae = build_vae(DATA_DIM, LATENT, (HIDDEN,)).to(x.device).eval()
    reference = ReferenceVAE().to(x.device)
    flops = len(x) * (samples * sample_flops() + image_flops())
    row: dict = {
        "images": len(x),
        "samples_per_image": samples,
        "max_elements": max_elements,
        "chunk": dict(
            zip(
                ("images", "particles"),
                chunk_shape(len(x), DATA_DIM, samples, None, max_elements),
                strict=True,
            )
        ),
    }
    # the warm-up estimates one chunk's images with the full K: the chunk shapes of the timed
    # run, so a compiled estimate finds its kernels in Inductor's disk cache (what it still
    # pays, capturing the program and loading the kernels, is inside the timed call)
    warm = x[: row["chunk"]["images"]]
    for name, options in LOSSES.items():
        if x.is_cuda:
            torch.cuda.reset_peak_memory_stats(x.device)
        before = peak_memory_bytes(x.device)
        warm_seconds, _ = timed(
            lambda options=options: (
                evaluate(
                    vae, warm, is_samples=samples, max_elements=max_elements, **options
                ).log_likelihood
            )
        )
        seconds, nll = timed(
            lambda options=options: (
                evaluate(
                    vae, x, is_samples=samples, max_elements=max_elements, **options
                ).log_likelihood
            )
        )
        row[name] = {
            "warm_up_seconds": warm_seconds,
            "seconds": seconds,
            "images_per_s": len(x) / seconds,
            "samples_per_s": len(x) * samples / seconds,
            "flops_per_s": flops / seconds,
            "share_of_peak": flops / seconds / peak,
            # on CPU the process's peak RSS only grows, so later rows show a lower bound
            "added_peak_memory_mib": (peak_memory_bytes(x.device) - before) / 2**20,
            "nll": nll,
        }
    compiled = torch.compile(chunk_log_weights)
    for ref_name, log_weights in (
        ("reference", chunk_log_weights),
        ("compiled_reference", compiled),
    ):
        reference_nll(reference, warm, samples, max_elements, log_weights)  # warm-up / compile
        ref_seconds, ref_nll = timed(
            lambda log_weights=log_weights: reference_nll(
                reference, x, samples, max_elements, log_weights
            )
        )
        row[ref_name] = {
            "seconds": ref_seconds,
            "share_of_peak": flops / ref_seconds / peak,
            "nll": ref_nll,
        }
        for name in LOSSES:
            row[name][f"ratio_time_over_{ref_name}"] = row[name]["seconds"] / ref_seconds
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10000, help="mnist5k test tiled to this")
    parser.add_argument("--samples", type=int, default=5000, help="K per image")
    parser.add_argument(
        "--max-elements", type=int, nargs="+", default=[MAX_ELEMENTS], help="chunk caps to try"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    args = parser.parse_args()
    smoke_caps(args, images=100, samples=20)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    pyro.set_rng_seed(args.seed)
    base = load_dataset("mnist5k").test_x
    x = torch.bernoulli(base.repeat(-(-args.images // len(base)), 1)[: args.images]).to(device)
    peak = matmul_peak(device)
    rows = [measure(x, args.samples, cap, peak) for cap in args.max_elements]
    report = {**describe(device), "matmul_peak_flops_per_s": peak, "rows": rows}
    print(f"fp32 matmul peak: {peak / 1e9:.1f} GFLOP/s on {device}")
    print(
        "| images | K | chunk cap | chunk (images x particles) | pyro-vae | seconds | images/s "
        "| % of peak | plain PyTorch % of peak (compiled) | time ratio over plain PyTorch "
        "(compiled) | + memory |"
    )
    print("|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        for name in LOSSES:
            m = r[name]
            print(
                f"| {r['images']} | {r['samples_per_image']} "
                f"| 2^{r['max_elements'].bit_length() - 1} "
                f"| {r['chunk']['images']} x {r['chunk']['particles']} | {name} "
                f"| {m['seconds']:.1f} | {m['images_per_s']:.1f} "
                f"| {100 * m['share_of_peak']:.1f} % "
                f"| {100 * r['reference']['share_of_peak']:.1f} % "
                f"({100 * r['compiled_reference']['share_of_peak']:.1f} %) "
                f"| {m['ratio_time_over_reference']:.3f} "
                f"({m['ratio_time_over_compiled_reference']:.3f}) "
                f"| {m['added_peak_memory_mib']:.0f} MiB |"
            )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()

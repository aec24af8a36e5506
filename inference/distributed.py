"""Data-parallel SVI across processes with ``torch.distributed`` (launched by ``torchrun``).

Every worker holds the whole model and draws the same permutation of the data each epoch; worker
r takes every world_size-th index of it, so the shards partition the epoch. Each worker's
minibatch estimates the full-data ELBO (the data plate scales by N / local batch), and the
gradients are averaged after every backward pass, which makes one step an estimate with the
global batch. gloo runs on CPU, NCCL on GPUs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Workers:
    """This process's place among the workers (``rank`` 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this worker writes checkpoints, pictures and metrics."""
        return self.rank == 0

    def shard(self, order: torch.Tensor) -> torch.Tensor:
        """This worker's part of an epoch's permutation; all parts have the same length (up to
        world_size - 1 datapoints of the epoch are left out, different ones each epoch)."""
        if not self.distributed:
            return order
        usable = len(order) - len(order) % self.world_size
        return order[:usable][self.rank :: self.world_size]

    def average_gradients(self, params: list[torch.Tensor]) -> None:
        """Replace every gradient by its mean over the workers (one flat all-reduce)."""
        if not self.distributed:
            return
        grads = [p.grad for p in params if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    def barrier(self) -> None:
        """Wait until every worker gets here."""
        if self.distributed:
            dist.barrier()

    def mean(self, value: float, device: torch.device) -> float:
        """The mean of ``value`` over the workers."""
        if not self.distributed:
            return value
        tensor = torch.tensor(float(value), dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return tensor.item() / self.world_size

    def any(self, flag: bool, device: torch.device) -> bool:
        """Whether ``flag`` is true on any worker (so all of them act alike)."""
        if not self.distributed:
            return flag
        tensor = torch.tensor(int(flag), device=device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return bool(tensor.item())


def workers_from_environment(device: torch.device) -> Workers:
    """Join the process group ``torchrun`` describes (``RANK``, ``WORLD_SIZE``, ...), with NCCL
    for CUDA devices and gloo otherwise; a single process when ``WORLD_SIZE`` is unset or 1."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Workers()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Workers(dist.get_rank(), dist.get_world_size())


def leave(workers: Workers, together: bool = False) -> None:
    """Leave the process group (after the last collective call).

    ``together``: wait at a barrier first, so no worker tears its connections down while
    another still uses them (a fit that ended normally; after an error a peer may never come).
    """
    if workers.distributed and dist.is_initialized():
        if together:
            dist.barrier()
        dist.destroy_process_group()

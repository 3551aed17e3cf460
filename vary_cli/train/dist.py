"""Processes and devices for `vary train`: the torchrun process group, DDP/FSDP wrapping, autocast, and
the sampler that gives each process its slice of every step's global batch.

`train.run` calls `setup_distributed` once, wraps its training module with `wrap`, and draws batches
with `StepBatches`, whose order depends only on (seed, step), so a resumed run sees the same data.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Iterable, Iterator

import torch
import torch.nn as nn

from ..errors import VaryError


@dataclass
class Dist:
    """This process's place in the run (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    started_here: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def mean(self, value: float, device: torch.device) -> float:
        if self.world == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(tensor)
        return tensor.item() / self.world

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        if self.world == 1:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        torch.distributed.all_reduce(tensor)
        return tensor.tolist()


def setup_distributed(device_name: str) -> tuple[Dist, torch.device]:
    """Join the process group torchrun describes in the environment (if any); choose this process's device."""
    from ..weights.device import resolve_device

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), resolve_device(device_name)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise VaryError(f"--device {device_name}: multi-process training runs on CUDA or CPU, not {device.type}")
    started = False
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
        started = True
    return Dist(rank, world, local_rank, started), device


def autocast_dtype(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `--dtype` (None: plain fp32). Weights and optimizer state stay fp32."""
    from ..weights.device import resolve_dtype

    dtype = resolve_dtype(name, device)
    return None if dtype == torch.float32 else dtype


def wrap(module: nn.Module, layers: Iterable[nn.Module], fsdp: bool, dist: Dist, device: torch.device) -> nn.Module:
    """DDP (or FSDP2 with `fsdp`, sharding each of `layers` and then the rest) across processes; the
    module itself when there is one process."""
    if dist.world == 1:
        return module
    if fsdp:
        from torch.distributed.fsdp import fully_shard

        for layer in layers:
            fully_shard(layer)
        fully_shard(module)
        return module
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)


class StepBatches(torch.utils.data.Sampler):
    """Index lists for every micro-batch of steps `start`..`total-1` on one process.

    Each epoch's order is a permutation seeded by (seed, epoch), padded by wrapping around to whole
    global batches; micro-step a of process r in a step takes the slice (a * world + r) of the step's
    global batch. So the step number alone fixes the data position, and a 1-process run with
    accumulation A sees what A processes see in one micro-step each.
    """

    def __init__(self, n: int, batch: int, accum: int, world: int, rank: int, seed: int, start: int, total: int):
        self.n, self.batch, self.accum, self.world, self.rank = n, batch, accum, world, rank
        self.seed, self.start, self.total = seed, start, total
        self.global_batch = batch * accum * world
        self.steps_per_epoch = math.ceil(n / self.global_batch)

    def order(self, epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed + epoch)
        order = torch.randperm(self.n, generator=generator).tolist()
        need = self.steps_per_epoch * self.global_batch
        while len(order) < need:
            order += order[: need - len(order)]
        return order

    def __iter__(self) -> Iterator[list[int]]:
        epoch, order = -1, []
        for step in range(self.start, self.total):
            if step // self.steps_per_epoch != epoch:
                epoch = step // self.steps_per_epoch
                order = self.order(epoch)
            base = (step % self.steps_per_epoch) * self.global_batch
            for micro in range(self.accum):
                first = base + (micro * self.world + self.rank) * self.batch
                yield order[first:first + self.batch]

    def __len__(self) -> int:
        return (self.total - self.start) * self.accum

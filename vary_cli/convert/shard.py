"""Which share of the work is this process's: `--shard I/N`, torchrun's or SLURM's rank, a stable hash.

`vary convert` and `vary data` split their items (pages, documents, records) across processes without
any communication: every process computes the same assignment from the item's key alone, so ranks
never wait for each other and any scheduler (torchrun, SLURM, a shell loop over `--shard`) works.
Python's `hash()` is salted per process, so keys are hashed with blake2b instead.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Mapping

from ..errors import InputError


@dataclass(frozen=True)
class Shard:
    """This process is `index` of `count` (0-based); `local_index` picks its GPU on a multi-GPU node."""

    index: int = 0
    count: int = 1
    local_index: int = 0
    source: str = "single"  # "single", "--shard", "torchrun" or "slurm": said in logs and summaries

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise InputError(f"shard {self.index}/{self.count}: need 0 <= I < N")

    @property
    def is_single(self) -> bool:
        return self.count == 1

    def owns(self, key: str) -> bool:
        """Whether the item called `key` is this shard's (the same answer in every process)."""
        return self.count == 1 or stable_hash(key) % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def stable_hash(key: str) -> int:
    """A 64-bit hash of `key` that is the same in every process, machine and Python version."""
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "big")


def parse_shard(text: str) -> Shard:
    """`--shard I/N` (0-based I), e.g. `0/4` ... `3/4`."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise InputError(f"--shard must look like I/N (e.g. 0/4), got {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise InputError(f"--shard {text}: need 0 <= I < N")
    return Shard(index, count, 0, "--shard")


def shard_from_env(environ: Mapping[str, str] | None = None) -> Shard:
    """The shard torchrun (RANK, WORLD_SIZE, LOCAL_RANK) or SLURM (SLURM_PROCID, SLURM_NTASKS,
    SLURM_LOCALID) gives this process; a single shard when neither launched it."""
    env = os.environ if environ is None else environ
    for source, rank, world, local in (("torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK"),
                                       ("slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID")):
        if rank in env and world in env:
            try:
                index, count, local_index = int(env[rank]), int(env[world]), int(env.get(local, 0))
            except ValueError:
                raise InputError(f"{rank}={env[rank]!r}, {world}={env[world]!r}: not integers") from None
            return Shard(index, count, local_index, source)
    return Shard()


def resolve_shard(flag: str | None, environ: Mapping[str, str] | None = None) -> Shard:
    """`--shard I/N` when given (it wins over the launcher's environment), else the environment's."""
    return parse_shard(flag) if flag else shard_from_env(environ)

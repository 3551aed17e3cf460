"""shard.py: --shard parsing, torchrun/SLURM environments, a hash that is stable across processes."""

import subprocess
import sys

import pytest

from vary_cli.convert.shard import Shard, parse_shard, resolve_shard, shard_from_env, stable_hash
from vary_cli.errors import InputError


def test_parse_shard_and_errors():
    assert parse_shard("1/4") == Shard(1, 4, 0, "--shard")
    for bad in ("4/4", "-1/2", "1", "a/b", "1/0"):
        with pytest.raises(InputError):
            parse_shard(bad)


def test_environment_of_each_launcher():
    assert shard_from_env({}) == Shard()
    assert shard_from_env({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1"}) == Shard(3, 8, 1, "torchrun")
    assert shard_from_env({"SLURM_PROCID": "5", "SLURM_NTASKS": "6", "SLURM_LOCALID": "2"}) == Shard(5, 6, 2, "slurm")
    assert resolve_shard("0/2", {"RANK": "1", "WORLD_SIZE": "2"}) == Shard(0, 2, 0, "--shard")
    with pytest.raises(InputError):
        shard_from_env({"RANK": "x", "WORLD_SIZE": "2"})


def test_every_key_has_exactly_one_owner_and_shares_balance():
    keys = [f"doc{d}#{p}" for d in range(50) for p in range(40)]
    owners = [[s for s in range(4) if Shard(s, 4).owns(k)] for k in keys]
    assert all(len(o) == 1 for o in owners)
    counts = [sum(o == [s] for o in owners) for s in range(4)]
    assert max(counts) - min(counts) < 0.15 * len(keys) / 4  # binomial spread: sd ~ 19 pages here


def test_hash_is_the_same_in_another_process():
    code = "from vary_cli.convert.shard import stable_hash; print(stable_hash('paper.pdf#7'))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "123"})
    assert int(other.stdout) == stable_hash("paper.pdf#7")

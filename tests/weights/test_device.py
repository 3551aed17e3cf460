"""device.py: auto choice CUDA > MPS > CPU, dtype policy, one-line DeviceErrors, the MPS fallbacks.

Availability is faked by monkeypatching torch.cuda / torch.backends.mps, so this runs on any CPU machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from vary_cli.weights import device
from vary_cli.weights.device import on_cpu_if_mps, resolve_device, resolve_dtype
from vary_cli.errors import DeviceError


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VARY_HOME", str(tmp_path / "vary"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("VARY_DEVICE", raising=False)


def fake(monkeypatch: pytest.MonkeyPatch, cuda: bool = False, mps: bool = False, bf16: bool = True,
         count: int = 1) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count if cuda else 0)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: bf16)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)


@pytest.mark.parametrize("cuda, mps, expected", [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")])
def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch: pytest.MonkeyPatch, cuda: bool, mps: bool,
                                             expected: str) -> None:
    fake(monkeypatch, cuda=cuda, mps=mps)
    assert resolve_device("auto").type == expected


def test_vary_device_overrides_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    fake(monkeypatch, cuda=True)
    monkeypatch.setenv("VARY_DEVICE", "cpu")
    assert resolve_device("auto").type == "cpu"
    assert resolve_device("cuda").type == "cuda"  # an explicit flag beats the variable
    monkeypatch.setenv("VARY_DEVICE", "tpu")
    with pytest.raises(DeviceError, match="^VARY_DEVICE tpu"):
        resolve_device("auto")


def test_explicit_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    fake(monkeypatch, cuda=True, count=2)
    assert resolve_device("CPU") == torch.device("cpu")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(DeviceError, match="only 2 CUDA device"):
        resolve_device("cuda:2")


@pytest.mark.parametrize("name, message", [("cuda", "no CUDA GPU"), ("mps", "MPS is not available"),
                                           ("tpu", "unknown device"), ("cuda:x", "unknown device")])
def test_missing_or_unknown_device_is_one_line(monkeypatch: pytest.MonkeyPatch, name: str, message: str) -> None:
    fake(monkeypatch)
    with pytest.raises(DeviceError, match=message) as err:
        resolve_device(name)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("kind, bf16, expected", [("cuda", True, torch.bfloat16), ("cuda", False, torch.float16),
                                                  ("mps", True, torch.float16), ("cpu", True, torch.float32)])
def test_auto_dtype(monkeypatch: pytest.MonkeyPatch, kind: str, bf16: bool, expected: torch.dtype) -> None:
    fake(monkeypatch, cuda=True, bf16=bf16)
    assert resolve_dtype("auto", torch.device(kind)) == expected


def test_auto_dtype_asks_for_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    # An emulating GPU reports True only when emulation counts: auto must then pick fp16.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert resolve_dtype("auto", torch.device("cuda")) == torch.float16


def test_explicit_dtypes(monkeypatch: pytest.MonkeyPatch) -> None:
    fake(monkeypatch, cuda=True, bf16=False)
    assert resolve_dtype("fp16", torch.device("cpu")) == torch.float16
    assert resolve_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(DeviceError, match="does not support bfloat16"):
        resolve_dtype("bf16", torch.device("cuda"))
    with pytest.raises(DeviceError, match="unknown dtype"):
        resolve_dtype("int8", torch.device("cpu"))


def test_on_cpu_if_mps_passes_through_off_mps() -> None:
    seen = []
    wrapped = on_cpu_if_mps(lambda x: seen.append(x) or x * 2)
    x = torch.ones(2)
    assert torch.equal(wrapped(x), x * 2) and seen[0] is x  # not copied


def test_on_cpu_if_mps_fallback_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pretend CPU tensors are MPS tensors: the wrapper must copy them (also nested ones) to the CPU,
    # run the op there, and move every tensor of the result back to the original device.
    monkeypatch.setattr(device, "CPU_FALLBACK_TYPES", frozenset({"cpu"}))
    moves: list[torch.device] = []
    real_to = torch.Tensor.to

    def recording_to(self: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        moves.append(torch.device(args[0]))  # type: ignore[arg-type]
        return real_to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", recording_to)
    resize = on_cpu_if_mps(F.interpolate)
    pos = torch.randn(1, 4, 8, 8)
    out = resize(pos, size=(4, 4), mode="bicubic", antialias=True, align_corners=False)
    expected = F.interpolate(pos, size=(4, 4), mode="bicubic", antialias=True, align_corners=False)
    torch.testing.assert_close(out, expected)
    assert moves == [torch.device("cpu"), torch.device("cpu")]  # the input there, the output back
    nested = on_cpu_if_mps(lambda d: {"a": d["a"] + 1, "b": (d["b"],)})({"a": pos, "b": pos})
    assert set(nested) == {"a", "b"} and isinstance(nested["b"], tuple)


def test_mps_fallback_variable_is_set_before_torch_import(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTORCH_ENABLE_MPS_FALLBACK"}
    code = ("import os, sys; import vary_cli.weights.device as d; "
            "print(os.environ['PYTORCH_ENABLE_MPS_FALLBACK'], d.enable_mps_fallback())")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "True"]
    env["PYTORCH_ENABLE_MPS_FALLBACK"] = "0"  # a user's explicit opt-out is kept
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0", "False"]

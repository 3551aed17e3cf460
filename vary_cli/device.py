"""Choose the device and dtype a model runs on: CUDA, then Apple MPS, then CPU.

`resolve_device("auto")` honours the VARY_DEVICE environment variable; an explicit request for a
device that is not there is a DeviceError. `resolve_dtype("auto", device)` gives bf16 on CUDA when the
GPU supports it (else fp16), fp16 on MPS and fp32 on CPU. Used by `load()` and the CLI.
"""

from __future__ import annotations

import os

import torch

from .errors import DeviceError

DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def resolve_device(name: str = "auto") -> torch.device:
    """Turn 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps' into an available torch.device."""
    if name == "auto":
        name = os.environ.get("VARY_DEVICE", "auto") or "auto"
    kind = name.split(":")[0]
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if kind == "cpu":
        return torch.device("cpu")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError("--device cuda: no CUDA GPU is available (torch.cuda.is_available() is False); "
                              "use --device cpu or auto")
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) present")
        return device
    if kind == "mps":
        if not _mps_available():
            raise DeviceError("--device mps: Apple MPS is not available on this machine; use --device cpu or auto")
        return torch.device("mps")
    raise DeviceError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """Turn 'auto', 'fp32', 'bf16' or 'fp16' into a dtype that works on `device`."""
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "mps":
            return torch.float16
        return torch.float32
    if name not in DTYPES:
        raise DeviceError(f"unknown dtype {name!r}; choose one of auto, {', '.join(DTYPES)}")
    dtype = DTYPES[name]
    if device.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise DeviceError("--dtype bf16: this GPU does not support bfloat16; use --dtype fp16 or auto")
    return dtype

"""Choose the device and dtype a model runs on: CUDA, then Apple MPS, then CPU; MPS fallbacks in one place.

`resolve_device("auto")` honours the VARY_DEVICE environment variable; an explicit request for a
device that is not there is a DeviceError. `resolve_dtype("auto", device)` gives bf16 on CUDA when the
GPU supports it natively (else fp16), fp16 on MPS and fp32 on CPU. Used by `checkpoint.load()` and the CLI.

MPS lacks some ops (e.g. antialiased bicubic `interpolate`, which SAM uses to resize position
embeddings; Vary adds them at the native 1024² without resizing, so none is known to be hit). Two
mechanisms, both no-ops off MPS:
  * `enable_mps_fallback()` sets PYTORCH_ENABLE_MPS_FALLBACK=1, which makes PyTorch run any missing MPS
    op on the CPU. PyTorch reads it once, when torch is imported, so this module calls it before its
    own `import torch`; it only takes effect if no other module imported torch first, which is why
    `vary_cli/__init__.py` should also `os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")`.
  * `on_cpu_if_mps(fn)` wraps one known-missing op: MPS tensors go to the CPU, `fn` runs there and the
    result comes back. Use it where the op is named, so the slow path is visible in the code.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

_FALLBACK_VAR = "PYTORCH_ENABLE_MPS_FALLBACK"


def enable_mps_fallback() -> bool:
    """Ask PyTorch to run ops MPS lacks on the CPU; True if that setting is (or will be) in effect.

    A user's explicit PYTORCH_ENABLE_MPS_FALLBACK=0 is kept. Returns False when the variable was set
    here after torch had already been imported, because PyTorch reads it only once.
    """
    if _FALLBACK_VAR in os.environ:
        return os.environ[_FALLBACK_VAR] not in ("", "0")
    torch_loaded = "torch" in sys.modules
    os.environ[_FALLBACK_VAR] = "1"
    return not torch_loaded


enable_mps_fallback()  # before `import torch`, see the module docstring

import torch  # noqa: E402  (must follow enable_mps_fallback)

from ..errors import DeviceError  # noqa: E402

DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_DTYPE_ALIASES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16", "half": "fp16", "float": "fp32"}
# Device types whose tensors `on_cpu_if_mps` sends to the CPU; a module constant so tests can add "cpu".
CPU_FALLBACK_TYPES: frozenset[str] = frozenset({"mps"})

P = ParamSpec("P")
R = TypeVar("R")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def _bf16_native() -> bool:
    # Newer torch counts emulated bf16 (pre-Ampere GPUs) as supported; it is slow, so ask for native.
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:
        return bool(torch.cuda.is_bf16_supported())


def resolve_device(name: str = "auto") -> torch.device:
    """Turn 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps' into an available torch.device."""
    flag = "--device"
    if name == "auto" and os.environ.get("VARY_DEVICE"):
        name, flag = os.environ["VARY_DEVICE"], "VARY_DEVICE"
    name = name.strip().lower()
    kind, _, index = name.partition(":")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if kind not in DEVICES or kind == "auto" or (index and (kind != "cuda" or not index.isdigit())):
        raise DeviceError(f"{flag} {name}: unknown device; choose one of auto, cpu, cuda, cuda:N, mps")
    if kind == "cpu":
        return torch.device("cpu")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"{flag} {name}: no CUDA GPU is available (torch.cuda.is_available() is False); "
                              "use --device cpu or auto")
        if index and int(index) >= torch.cuda.device_count():
            raise DeviceError(f"{flag} {name}: only {torch.cuda.device_count()} CUDA device(s) present")
        return torch.device(name)
    if not _mps_available():
        raise DeviceError(f"{flag} mps: Apple MPS is not available on this machine; use --device cpu or auto")
    return torch.device("mps")


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """Turn 'auto', 'fp32', 'bf16' or 'fp16' (or float32/bfloat16/float16) into a dtype that works on `device`."""
    name = _DTYPE_ALIASES.get(name.strip().lower(), name.strip().lower())
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if _bf16_native() else torch.float16
        if device.type == "mps":
            return torch.float16
        return torch.float32
    if name not in DTYPES:
        raise DeviceError(f"--dtype {name}: unknown dtype; choose one of auto, {', '.join(DTYPES)}")
    dtype = DTYPES[name]
    if device.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise DeviceError("--dtype bf16: this GPU does not support bfloat16; use --dtype fp16 or auto")
    return dtype


def _move(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, (list, tuple)):
        return type(value)(_move(v, device) for v in value)
    if isinstance(value, dict):
        return {k: _move(v, device) for k, v in value.items()}
    return value


def _fallback_device(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.device | None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor) and value.device.type in CPU_FALLBACK_TYPES:
            return value.device
    return None


def on_cpu_if_mps(fn: Callable[P, R]) -> Callable[P, R]:
    """Wrap `fn` so that, given MPS tensors, it runs on CPU copies and returns results on MPS.

    Example: `on_cpu_if_mps(F.interpolate)(pos, size=(64, 64), mode="bicubic", antialias=True)`.
    Tensors nested in lists, tuples and dicts are moved too; anything else passes through.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        device = _fallback_device(args, kwargs)
        if device is None:
            return fn(*args, **kwargs)
        cpu = torch.device("cpu")
        result = fn(*_move(args, cpu), **_move(kwargs, cpu))
        return _move(result, device)

    return wrapper

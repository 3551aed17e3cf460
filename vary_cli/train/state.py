"""The state of a `vary train` run and its checkpoints: what a model family brings to the loop
(`Recipe`, and the chunked answer-token loss both families share), the run's live objects
(`RunState`), saving a checkpoint and restoring from one.

A checkpoint is a release directory (models/models/export.py) plus `training_state.pt` (optimizer, scheduler, grad
scaler, RNG states, step, and the settings a resumed run must share). `save` writes it atomically and
then moves `OUT/latest`. `resume_point` reads the training state `latest` names, or, when that file is
torn or corrupt, the newest earlier whole checkpoint's (saying so); `restore` refuses a checkpoint made
with other settings. Used by `loop.py`.
"""

from __future__ import annotations

import json
import pickle
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.config import ModelConfig
from .dataset import IGNORE_INDEX
from ..errors import VaryError, WeightsError, one_line
from ..models.export import TRAINING_STATE, prune, save_release, write_latest
from .config import TrainConfig
from .dist import Dist

METRICS_FILE = "metrics.jsonl"
# Settings a resumed run must share with the run it continues (else the data order or schedule differ).
RESUME_KEYS = ("stage", "data_fingerprint", "global_batch", "max_length", "seed", "epochs", "max_steps",
               "learning_rate", "warmup_ratio", "weight_decay", "freeze_lm", "fsdp", "dropout", "train_encoder")


class TrainProgress:
    """Callbacks of a training run; the CLI draws a progress bar from them. Only rank 0 receives them."""

    def started(self, info: dict[str, Any]) -> None: ...

    def step(self, metrics: dict[str, Any]) -> None: ...

    def evaluated(self, metrics: dict[str, Any]) -> None: ...

    def saved(self, directory: Path) -> None: ...

    def message(self, text: str) -> None: ...


class Recipe:
    """What a model family brings to the training loop; train_qwen.py and train_vocabulary.py fill it in.

    `loss(model, **batch)` returns (sum of token cross-entropies, number of target tokens) of a collated
    batch; `prepare` sets what trains and the training-mode switches, `finish` undoes the switches.
    """

    def __init__(self, model: nn.Module, config: ModelConfig, tokenizer: Any, tokenizer_files: dict[str, bytes]):
        self.model = model
        self.config = config
        self.tokenizer = tokenizer
        # Kept in memory: the checkpoint they came from may be pruned while the run saves newer ones.
        self.tokenizer_files = tokenizer_files

    loss: Callable[..., tuple[torch.Tensor, torch.Tensor]]

    @property
    def pad_id(self) -> int:
        raise NotImplementedError

    def layers(self) -> list[nn.Module]:
        """The decoder layers: FSDP shards each, gradient checkpointing recomputes each."""
        raise NotImplementedError

    def prepare(self, cfg: TrainConfig) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        pass


class TrainingModel(nn.Module):
    """The unit DDP/FSDP wraps: batch in, (loss sum, target count) out."""

    def __init__(self, model: nn.Module, loss: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> None:
        super().__init__()
        self.model = model
        self.loss = loss

    def forward(self, **batch: torch.Tensor):  # type: ignore[override]
        return self.loss(self.model, **batch)


@dataclass
class RunState:
    cfg: TrainConfig
    dist: Dist
    device: torch.device
    amp: torch.dtype | None
    recipe: Recipe
    wrapped: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: Any
    resume_info: dict[str, Any]
    progress: TrainProgress
    metrics: Path
    eval_data: Any = None
    last_eval: float | None = None

    @property
    def model(self) -> nn.Module:
        return self.recipe.model


def write_metrics(run_: RunState, metrics: dict[str, Any]) -> None:
    if run_.dist.main:
        with open(run_.metrics, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(metrics) + "\n")


def trim_metrics(path: Path, step: int) -> None:
    """Drop metrics lines of steps after `step` (a resumed run repeats them)."""
    from ..files import atomic_write_text

    if not path.is_file():
        return
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    kept = [line for line in lines if (_metric_step(line) or 0) <= step and _metric_step(line) is not None]
    if len(kept) != len(lines):
        atomic_write_text(path, "".join(line + "\n" for line in kept))


def _metric_step(line: str) -> int | None:
    """The step of a metrics line; None for a line torn by a kill or a full disk (it is dropped)."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    return record.get("step", 0) if isinstance(record, dict) else None


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def save(run_: RunState, step: int) -> Path:
    """Write OUT/checkpoint-N (release layout + training_state.pt) atomically, then point `latest` at it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, \
        get_optimizer_state_dict

    cfg, dist = run_.cfg, run_.dist
    if cfg.fsdp and dist.world > 1:
        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        weights = {k.removeprefix("model."): v for k, v in get_model_state_dict(run_.wrapped, options=options).items()}
        optimizer_state = get_optimizer_state_dict(run_.wrapped, run_.optimizer, options=options)
    else:
        weights = run_.model.state_dict()
        optimizer_state = run_.optimizer.state_dict()
    name = f"checkpoint-{step}"
    directory = Path(cfg.out) / name
    if dist.main:
        training_state = {"step": step, "optimizer": optimizer_state, "scheduler": run_.scheduler.state_dict(),
                          "scaler": run_.scaler.state_dict() if run_.scaler else None, "rng": _rng_state(),
                          "resume": run_.resume_info, "config": json.dumps(cfg.to_json()),
                          "world": dist.world}
        hook = cfg.extra.get("before_save_release")

        def extra(tmp: Path) -> None:
            torch.save(training_state, tmp / TRAINING_STATE)
            if hook:
                hook(tmp)

        save_release(directory, {k: v.detach().float() for k, v in weights.items()}, run_.recipe.config,
                     run_.recipe.tokenizer_files, extra=extra)
        write_latest(Path(cfg.out), name)
        prune(Path(cfg.out), cfg.keep)
        run_.progress.saved(directory)
    dist.barrier()
    return directory


# What `save` puts in training_state.pt and `restore` reads back.
STATE_KEYS = ("step", "optimizer", "scheduler", "rng", "resume")


def load_training_state(directory: Path) -> dict[str, Any]:
    """A checkpoint's training_state.pt.

    Raises:
        WeightsError: the file is torn (a truncated copy, a bad disk) or not what `save` writes; names it.
    """
    path = Path(directory) / TRAINING_STATE
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as exc:
        # torch reports a truncated zip as RuntimeError ("PytorchStreamReader failed ..."), other damage as
        # any of these.
        raise WeightsError(f"{path} is damaged ({one_line(exc)[:160]})") from None
    if not isinstance(state, dict) or any(key not in state for key in STATE_KEYS):
        raise WeightsError(f"{path} is damaged (not the training state vary train saves)")
    return state


def resume_point(out: Path, latest: Path, message: Callable[[str], None]) -> tuple[Path, dict[str, Any]]:
    """The checkpoint to resume from and its training state: `latest`, or, when its training state is
    damaged, the newest earlier checkpoint-N whose state loads (said through `message`).

    Raises:
        WeightsError: `latest`'s training state is damaged and no earlier checkpoint is whole.
    """
    try:
        return latest, load_training_state(latest)
    except WeightsError as exc:
        damaged = str(exc)
    for candidate in _earlier_checkpoints(Path(out), latest):
        try:
            state = load_training_state(candidate)
        except WeightsError as exc:
            message(f"{exc}; trying an earlier checkpoint")
            continue
        message(f"{damaged}; resuming from the previous whole checkpoint, {candidate.name}")
        return candidate, state
    raise WeightsError(f"--resume: {damaged}, and {out} holds no earlier whole checkpoint to resume from; "
                       "start a new run with another --out")


def _earlier_checkpoints(out: Path, latest: Path) -> list[Path]:
    """checkpoint-N directories before `latest` that hold a training state and a config, newest first."""
    number = _checkpoint_number(latest.name)
    found = [p for p in out.glob("checkpoint-*") if p.is_dir() and _checkpoint_number(p.name) is not None
             and (number is None or _checkpoint_number(p.name) < number)
             and (p / TRAINING_STATE).is_file() and (p / "config.json").is_file()]
    return sorted(found, key=lambda p: _checkpoint_number(p.name), reverse=True)


def _checkpoint_number(name: str) -> int | None:
    match = re.fullmatch(r"checkpoint-(\d+)", name)
    return int(match.group(1)) if match else None


def restore(run_: RunState, directory: Path, state: dict[str, Any]) -> int:
    """Load the optimizer, scheduler and RNG state (`state`, as `resume_point` read it from `directory`);
    returns the step to go on from."""
    saved = state["resume"]
    # A key the saving run did not record (an older vary) counts as its default.
    changed = [f"{k} ({saved.get(k)} -> {run_.resume_info[k]})" for k in RESUME_KEYS
               if k in saved and saved[k] != run_.resume_info[k]]
    if changed:
        raise VaryError(f"--resume: {directory} was trained with other settings: {', '.join(changed)}; "
                        "use the same data and flags, or start a new run with another --out")
    if run_.cfg.fsdp and run_.dist.world > 1:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(run_.wrapped, run_.optimizer, state["optimizer"],
                                 options=StateDictOptions(full_state_dict=True))
    else:
        run_.optimizer.load_state_dict(state["optimizer"])
    run_.scheduler.load_state_dict(state["scheduler"])
    if run_.scaler and state.get("scaler"):
        run_.scaler.load_state_dict(state["scaler"])
    rng = state["rng"]
    torch.set_rng_state(rng["torch"])
    random.setstate(rng["python"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return int(state["step"])


# Answer positions whose logits are computed at once; bounds the (positions x vocab) logits in memory.
LOSS_CHUNK = 1024


def target_loss(hidden: torch.Tensor, labels: torch.Tensor,
                head: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of token cross-entropies, number of targets): `head(hidden[:, :-1])` against labels[:, 1:].

    Logits are computed only at target positions, in chunks (recomputed in the backward pass when
    there are several), in fp32.
    """
    targets = labels[:, 1:]  # (B, T-1)
    selected = targets != IGNORE_INDEX
    states = hidden[:, :-1][selected]  # (N, W)
    wanted = targets[selected]  # (N,)
    total = hidden.sum() * 0.0
    # At least one (possibly empty) chunk: with no target left in this micro-batch the head must still be in
    # the graph, or DDP's gradient reduction goes out of step between ranks (an empty chunk adds 0).
    for start in range(0, max(wanted.shape[0], 1), LOSS_CHUNK):
        chunk_states, chunk_wanted = states[start:start + LOSS_CHUNK], wanted[start:start + LOSS_CHUNK]
        if torch.is_grad_enabled() and wanted.shape[0] > LOSS_CHUNK:
            from torch.utils.checkpoint import checkpoint

            total = total + checkpoint(_chunk_loss, head, chunk_states, chunk_wanted, use_reentrant=False)
        else:
            total = total + _chunk_loss(head, chunk_states, chunk_wanted)
    return total, selected.sum()


def _chunk_loss(head: Callable[[torch.Tensor], torch.Tensor], states: torch.Tensor,
                wanted: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(head(states).float(), wanted, reduction="sum")  # head: (n, W) -> (n, V)

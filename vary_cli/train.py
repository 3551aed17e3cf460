"""`vary train`: fine-tune Vary-toy / Vary-base (pretraining or SFT) the way the original trains them.

`run(TrainConfig)` loads the start checkpoint through checkpoint.py, freezes what the original freezes
(both vision towers always; with `freeze_lm` also the LLM except its input embeddings), and trains the
projectors and the LLM with AdamW (no decay on biases and LayerNorms), a cosine schedule with linear
warm-up, gradient clipping and accumulation, bf16/fp16 autocast on GPUs and optional gradient
checkpointing. The loss is the original's: mean cross-entropy over the answer tokens of each
micro-batch (training.md §3), averaged over micro-batches and processes. As in Qwen-1's training
mode, no dynamic NTK and no log-n scaling.

Checkpoints are release directories (`OUT/checkpoint-N`, export.py) that `vary ocr --model` loads, plus
`training_state.pt` (optimizer, scheduler, RNG, step); the data position is the step itself, because
each epoch's order is a seeded permutation. `OUT/latest` names the newest complete checkpoint, and
`resume` continues from it exactly. The same command runs under `torchrun --nproc-per-node N`:
DDP (gloo on CPU, NCCL on CUDA) or, with `fsdp`, FSDP2. Progress goes to a `TrainProgress` the caller
passes in; metrics go to `OUT/metrics.jsonl` (one JSON object per logged step or evaluation).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import VaryConfig
from .data import IGNORE_INDEX, DataReport, Sample, TrainDataset, check_images, collate, encode_all, \
    file_fingerprint, read_samples
from .errors import VaryError
from .export import TRAINING_STATE, prune, read_latest, remove_stale, save_release, write_latest
from .model import VaryQwenForCausalLM, attention_bias, check_image_tokens, rotary_cos_sin
from .train_config import ADAM_BETAS, ADAM_EPS, TrainConfig

METRICS_FILE = "metrics.jsonl"
# Settings a resumed run must share with the run it continues (else the data order or schedule differ).
_RESUME_KEYS = ("stage", "data_fingerprint", "global_batch", "max_length", "seed", "epochs", "max_steps",
                "learning_rate", "warmup_ratio", "weight_decay", "freeze_lm", "fsdp")
# Answer positions whose logits are computed at once; bounds the (positions x vocab) logits in memory.
_LOSS_CHUNK = 1024


class TrainProgress:
    """Callbacks of a training run; the CLI draws a progress bar from them. Only rank 0 receives them."""

    def started(self, info: dict[str, Any]) -> None: ...

    def step(self, metrics: dict[str, Any]) -> None: ...

    def evaluated(self, metrics: dict[str, Any]) -> None: ...

    def saved(self, directory: Path) -> None: ...

    def message(self, text: str) -> None: ...


@dataclass
class TrainResult:
    """How a run ended: the last checkpoint and the last logged numbers."""

    checkpoint: Path | None
    steps: int
    loss: float | None
    eval_loss: float | None = None
    report: DataReport | None = None


@dataclass
class Dist:
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
    from .device import resolve_device

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
    from .device import resolve_dtype

    dtype = resolve_dtype(name, device)
    return None if dtype == torch.float32 else dtype


def cosine_with_warmup(step: int, warmup: int, total: int) -> float:
    """Hugging Face's get_cosine_schedule_with_warmup factor (half a cosine, from 1 down to 0)."""
    if step < warmup:
        return step / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def set_trainable(model: VaryQwenForCausalLM, freeze_lm: bool) -> None:
    """The original's freezing: vision towers never train (they run without gradients); with
    `freeze_lm` only the projectors and the input embeddings train, else also the whole LLM."""
    model.requires_grad_(False)
    trainable = [model.mm_projector, model.mm_projector_vary, model.embed_tokens]
    if not freeze_lm:
        trainable += [model.layers, model.norm, model.lm_head]
    for module in trainable:
        module.requires_grad_(True)


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups as trainer_vit_fixlr.py makes them: decay on everything but biases and the weights
    of nn.LayerNorm modules. Qwen-1's RMSNorm is not an nn.LayerNorm there, so, as in the original, the
    LLM's norm weights are decayed. (Its 'vision_encoder' split matches no Vary-toy/base parameter.)"""
    in_layernorm = {f"{module_name}.{name}" if module_name else name
                    for module_name, module in model.named_modules() if isinstance(module, nn.LayerNorm)
                    for name, _ in module.named_parameters(recurse=False)}
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if "bias" in name or name in in_layernorm else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def enable_gradient_checkpointing(model: VaryQwenForCausalLM) -> None:
    """Recompute each decoder layer in the backward pass (transformers' GradientCheckpointingLayer hook)."""
    from torch.utils.checkpoint import checkpoint

    for layer in model.layers:
        layer.gradient_checkpointing = True
        layer._gradient_checkpointing_func = functools.partial(checkpoint, use_reentrant=False)


def lm_hidden(model: VaryQwenForCausalLM, embeds: torch.Tensor) -> torch.Tensor:
    """Final decoder hidden states (B, T, W) in Qwen-1's training mode: positions 0..T-1, the plain
    rotary base (no dynamic NTK), no log-n, causal attention. Right padding needs no mask: a real
    token never attends to the padding after it, and padded positions carry no label."""
    batch, length = embeds.shape[:2]
    positions = torch.arange(length, device=embeds.device).expand(batch, length)  # (B, T)
    cos_sin = rotary_cos_sin(positions, [1.0] * batch, model.config.lm, embeds.dtype)
    mask = None  # SDPA applies the causal mask itself (and can then use its fused kernels)
    if model.qwen2_config._attn_implementation != "sdpa":
        mask = attention_bias(torch.zeros(batch, dtype=torch.long, device=embeds.device), 0, length, length,
                              embeds.dtype)  # (B, 1, T, T) causal
    hidden = embeds
    for layer in model.layers:
        hidden = layer(hidden, attention_mask=mask, position_embeddings=cos_sin, vary_cache=None, vary_logn=None)
    return hidden  # (B, T, W)


def merge_images(model: VaryQwenForCausalLM, input_ids: torch.Tensor, clip: torch.Tensor,
                 sam: torch.Tensor) -> torch.Tensor:
    """Token embeddings (B, T, W) with each image row's `<imgpad>` run replaced by its image features.

    Rows without image tokens keep their embeddings and, as in the original, add zero times the
    features, so the projectors stay in the graph (DDP needs every trainable parameter to get a grad).
    """
    features = model.encode_images(clip, sam)  # (B, N, W)
    embeds = model.embed_tokens(input_ids)  # (B, T, W)
    is_patch = input_ids == model.config.im_patch_token  # (B, T)
    has_image = is_patch.any(dim=1)  # (B,)
    if has_image.any():
        check_image_tokens(input_ids[has_image], model.config, features.shape[1])
        embeds = embeds.masked_scatter(is_patch[..., None], features[has_image].to(embeds.dtype))
    if not has_image.all():
        embeds = embeds + (0.0 * features).sum().to(embeds.dtype)
    return embeds


def batch_loss(model: VaryQwenForCausalLM, input_ids: torch.Tensor, labels: torch.Tensor, clip: torch.Tensor,
               sam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of token cross-entropies, number of target tokens) of a batch: logits[:-1] against labels[1:].

    Logits are computed only at target positions, in chunks, in fp32.
    """
    hidden = lm_hidden(model, merge_images(model, input_ids, clip, sam))  # (B, T, W)
    targets = labels[:, 1:]  # (B, T-1)
    selected = targets != IGNORE_INDEX
    states = hidden[:, :-1][selected]  # (N, W)
    wanted = targets[selected]  # (N,)
    total = hidden.sum() * 0.0  # keeps the graph whole when no target is left
    for start in range(0, wanted.shape[0], _LOSS_CHUNK):
        chunk_states, chunk_wanted = states[start:start + _LOSS_CHUNK], wanted[start:start + _LOSS_CHUNK]
        if torch.is_grad_enabled() and wanted.shape[0] > _LOSS_CHUNK:
            from torch.utils.checkpoint import checkpoint

            total = total + checkpoint(_chunk_loss, model, chunk_states, chunk_wanted, use_reentrant=False)
        else:
            total = total + _chunk_loss(model, chunk_states, chunk_wanted)
    return total, selected.sum()


def _chunk_loss(model: VaryQwenForCausalLM, states: torch.Tensor, wanted: torch.Tensor) -> torch.Tensor:
    logits = model.lm_head(model.norm(states))  # (n, V)
    return F.cross_entropy(logits.float(), wanted, reduction="sum")


class TrainingModel(nn.Module):
    """The unit DDP/FSDP wraps: batch in, (loss sum, target count) out."""

    def __init__(self, model: VaryQwenForCausalLM) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, labels, clip, sam):  # type: ignore[override]
        return batch_loss(self.model, input_ids, labels, clip, sam)


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


@dataclass
class _Run:
    cfg: TrainConfig
    dist: Dist
    device: torch.device
    amp: torch.dtype | None
    model: VaryQwenForCausalLM
    wrapped: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: Any
    config: VaryConfig
    tokenizer_bytes: bytes
    resume_info: dict[str, Any]
    progress: TrainProgress
    metrics: Path
    eval_data: TrainDataset | None = None
    last_eval: float | None = None


def read_data(paths: tuple[Path, ...], prompt_style: str) -> list[Sample]:
    samples: list[Sample] = []
    for path in paths:
        samples += read_samples(Path(path), prompt_style)
    return samples


def run(cfg: TrainConfig, progress: TrainProgress | None = None) -> TrainResult:
    """Train as `cfg` says; returns the last checkpoint. Library errors are VaryError subclasses."""
    dist, device = setup_distributed(cfg.device)
    try:
        return _run(cfg, dist, device, progress if progress and dist.main else TrainProgress())
    finally:
        if dist.started_here:
            torch.distributed.destroy_process_group()


def _run(cfg: TrainConfig, dist: Dist, device: torch.device, progress: TrainProgress) -> TrainResult:
    from .checkpoint import load, load_directory

    amp = autocast_dtype(cfg.dtype, device)
    out = Path(cfg.out)
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
        for path in remove_stale(out):
            progress.message(f"removed {path.name}, left by a run stopped while saving")
    dist.barrier()
    start_dir = read_latest(out)
    if start_dir is not None and not cfg.resume:
        raise VaryError(f"{out} already holds checkpoints ({start_dir.name}); pass --resume to continue "
                        "that run, or choose another --out")
    if cfg.resume and start_dir is None:
        progress.message(f"nothing to resume in {out}; starting from {cfg.model}")

    # The model: rank 0 first, so a download from the hub happens once.
    loaded = None
    for turn in (True, False):
        if dist.main == turn:
            loaded = (load_directory(start_dir, device, torch.float32) if start_dir is not None
                      else load(cfg.model, device=str(device), dtype="fp32"))
        dist.barrier()
    assert loaded is not None
    model, config = loaded.model, loaded.config
    # Kept in memory: the checkpoint it came from may be pruned while this run saves newer ones.
    tokenizer_bytes = (loaded.directory / "qwen.tiktoken").read_bytes()

    samples = read_data(cfg.data, config.prompt_style)
    check_images(samples)
    report = encode_all(samples, loaded.tokenizer, config, cfg.max_length)
    report.fingerprint = file_fingerprint(list(cfg.data))
    eval_set = None
    if cfg.eval_data:
        eval_samples = read_data(cfg.eval_data, config.prompt_style)
        check_images(eval_samples)
        encode_all(eval_samples, loaded.tokenizer, config, cfg.max_length)
        eval_set = TrainDataset(eval_samples, loaded.tokenizer, config, cfg.max_length)

    global_batch = cfg.batch_size * cfg.grad_accum * dist.world
    steps_per_epoch = math.ceil(len(samples) / global_batch)
    total = cfg.max_steps if cfg.max_steps is not None else cfg.epochs * steps_per_epoch
    warmup = math.ceil(cfg.warmup_ratio * total)
    resume_info = {"stage": cfg.stage, "data_fingerprint": report.fingerprint, "global_batch": global_batch,
                   "max_length": cfg.max_length, "seed": cfg.seed, "epochs": cfg.epochs,
                   "max_steps": cfg.max_steps, "learning_rate": cfg.learning_rate,
                   "warmup_ratio": cfg.warmup_ratio, "weight_decay": cfg.weight_decay,
                   "freeze_lm": cfg.freeze_lm, "fsdp": cfg.fsdp}

    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    model.train()
    set_trainable(model, cfg.freeze_lm)
    # Training attention is plain causal softmax attention (no KV cache, no log-n): SDPA computes it
    # with fused kernels. Restored to Qwen-1's own attention when the run ends.
    previous_attention = model.qwen2_config._attn_implementation
    model.qwen2_config._attn_implementation = "sdpa"
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    wrapped = wrap(TrainingModel(model), cfg, dist, device)
    optimizer = torch.optim.AdamW(parameter_groups(model, cfg.weight_decay), lr=cfg.learning_rate,
                                  betas=ADAM_BETAS, eps=ADAM_EPS)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, functools.partial(cosine_with_warmup, warmup=warmup, total=total))
    scaler = torch.amp.GradScaler(device.type) if amp == torch.float16 else None
    run_ = _Run(cfg, dist, device, amp, model, wrapped, optimizer, scheduler, scaler, config, tokenizer_bytes,
                resume_info, progress, out / METRICS_FILE, eval_set)

    start = 0
    if start_dir is not None:
        start = restore(run_, start_dir)
    if dist.main:
        trim_metrics(run_.metrics, start)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    progress.started({"total_steps": total, "start_step": start, "samples": len(samples),
                      "global_batch": global_batch, "steps_per_epoch": steps_per_epoch, "warmup_steps": warmup,
                      "trainable_parameters": trainable, "device": str(device), "world": dist.world,
                      "autocast": str(amp).removeprefix("torch.") if amp else "fp32", "report": report,
                      "resumed_from": str(start_dir) if start_dir else None})

    dataset = TrainDataset(samples, loaded.tokenizer, config, cfg.max_length)
    sampler = StepBatches(len(samples), cfg.batch_size, cfg.grad_accum, dist.world, dist.rank, cfg.seed,
                          start, total)
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, num_workers=cfg.workers, pin_memory=device.type == "cuda",
        collate_fn=functools.partial(collate, pad_id=loaded.tokenizer.endoftext_id),
        persistent_workers=False)
    last_saved = start if start_dir is not None else None
    last_loss = None
    try:
        batches = iter(loader)
        began = time.perf_counter()
        for step in range(start, total):
            tick = time.perf_counter()
            lr = scheduler.get_last_lr()[0]
            loss, tokens = train_step(run_, batches)
            grad_norm = clip_and_step(run_)
            step_s = time.perf_counter() - tick
            done = step + 1
            last_loss = loss
            if done % cfg.log_every == 0 or done == total:
                elapsed = time.perf_counter() - began
                metrics = {"step": done, "epoch": round(done / steps_per_epoch, 4), "loss": loss, "lr": lr,
                           "grad_norm": grad_norm, "tokens": tokens, "samples_per_s": global_batch / step_s,
                           "step_s": step_s, "eta_s": elapsed / (done - start) * (total - done)}
                if device.type == "cuda":
                    metrics["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
                write_metrics(run_, metrics)
                progress.step(metrics)
            if eval_set is not None and (done % (cfg.eval_every or cfg.save_every) == 0 or done == total):
                evaluate(run_, done)
            if done % cfg.save_every == 0 or done == total:
                save(run_, done)
                last_saved = done
            hook = cfg.extra.get("after_step")
            if hook:
                hook(done)
    finally:
        model.qwen2_config._attn_implementation = previous_attention
    final = out / f"checkpoint-{last_saved}" if last_saved is not None else None
    return TrainResult(final, total, last_loss, run_.last_eval, report)


def wrap(module: TrainingModel, cfg: TrainConfig, dist: Dist, device: torch.device) -> nn.Module:
    """DDP (or FSDP2 with `cfg.fsdp`) across processes; the module itself when there is one."""
    if cfg.fsdp:
        if dist.world == 1:
            return module
        from torch.distributed.fsdp import fully_shard

        for layer in module.model.layers:
            fully_shard(layer)
        fully_shard(module)
        return module
    if dist.world == 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)


def train_step(run_: _Run, batches: Iterator[dict[str, torch.Tensor]]) -> tuple[float, int]:
    """Forward and backward over the step's micro-batches; returns (mean loss over processes, tokens)."""
    cfg, device = run_.cfg, run_.device
    losses, tokens = [], 0
    for micro in range(cfg.grad_accum):
        batch = {k: v.to(device, non_blocking=True) for k, v in next(batches).items()}
        last = micro == cfg.grad_accum - 1
        sync = contextlib.nullcontext()
        if not last and hasattr(run_.wrapped, "no_sync"):
            sync = run_.wrapped.no_sync()  # DDP: all-reduce gradients once, on the last micro-step
        elif hasattr(run_.wrapped, "set_requires_gradient_sync"):
            run_.wrapped.set_requires_gradient_sync(last)  # FSDP2's equivalent
        with sync:
            with torch.autocast(device.type, dtype=run_.amp or torch.float32, enabled=run_.amp is not None):
                total, count = run_.wrapped(batch["input_ids"], batch["labels"], batch["clip"], batch["sam"])
            # The original's loss: each micro-batch's token mean, averaged over micro-batches.
            loss = total / count.clamp(min=1)
            scaled = loss / cfg.grad_accum
            (run_.scaler.scale(scaled) if run_.scaler else scaled).backward()
        losses.append(loss.item())
        tokens += int(count)
    return run_.dist.mean(sum(losses) / len(losses), device), int(run_.dist.sum([tokens], device)[0])


def clip_and_step(run_: _Run) -> float:
    params = [p for p in run_.model.parameters() if p.requires_grad]
    if run_.scaler:
        run_.scaler.unscale_(run_.optimizer)
    norm = torch.nn.utils.clip_grad_norm_(params, run_.cfg.max_grad_norm if run_.cfg.max_grad_norm else float("inf"))
    if hasattr(norm, "full_tensor"):
        norm = norm.full_tensor()
    if run_.scaler:
        run_.scaler.step(run_.optimizer)
        run_.scaler.update()
    else:
        run_.optimizer.step()
    run_.scheduler.step()
    run_.optimizer.zero_grad(set_to_none=True)
    return float(norm)


@torch.no_grad()
def evaluate(run_: _Run, step: int) -> float:
    """Token-weighted mean loss over the eval data (each process takes every world-th sample)."""
    assert run_.eval_data is not None
    cfg, dist, device = run_.cfg, run_.dist, run_.device
    indices = list(range(dist.rank, len(run_.eval_data), dist.world))
    pad_id = run_.eval_data.tokenizer.endoftext_id
    loss_sum, count = 0.0, 0
    # FSDP needs every process in every forward: pad the shorter shards with a repeat counted as nothing.
    rounds = math.ceil(math.ceil(len(run_.eval_data) / dist.world) / cfg.batch_size)
    for r in range(rounds):
        chunk = indices[r * cfg.batch_size:(r + 1) * cfg.batch_size]
        weight = 1.0 if chunk else 0.0
        batch = collate([run_.eval_data[i] for i in (chunk or [0])], pad_id)
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.autocast(device.type, dtype=run_.amp or torch.float32, enabled=run_.amp is not None):
            total, n = run_.wrapped(batch["input_ids"], batch["labels"], batch["clip"], batch["sam"])
        loss_sum += weight * float(total)
        count += int(weight * int(n))
    loss_sum, count = dist.sum([loss_sum, float(count)], device)
    eval_loss = loss_sum / max(count, 1)
    run_.last_eval = eval_loss
    metrics = {"step": step, "eval_loss": eval_loss, "eval_tokens": int(count)}
    write_metrics(run_, metrics)
    run_.progress.evaluated(metrics)
    return eval_loss


def write_metrics(run_: _Run, metrics: dict[str, Any]) -> None:
    if run_.dist.main:
        with open(run_.metrics, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(metrics) + "\n")


def trim_metrics(path: Path, step: int) -> None:
    """Drop metrics lines of steps after `step` (a resumed run repeats them)."""
    from .output import atomic_write_text

    if not path.is_file():
        return
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    kept = [line for line in lines if json.loads(line).get("step", 0) <= step]
    if len(kept) != len(lines):
        atomic_write_text(path, "".join(line + "\n" for line in kept))


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def save(run_: _Run, step: int) -> Path:
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

        save_release(directory, {k: v.detach().float() for k, v in weights.items()}, run_.config,
                     run_.tokenizer_bytes, extra=extra)
        write_latest(Path(cfg.out), name)
        prune(Path(cfg.out), cfg.keep)
        run_.progress.saved(directory)
    dist.barrier()
    return directory


def restore(run_: _Run, directory: Path) -> int:
    """Load the optimizer, scheduler and RNG state saved beside the weights; returns the step to go on from."""
    state = torch.load(directory / TRAINING_STATE, map_location="cpu", weights_only=True)
    saved = state["resume"]
    changed = [f"{k} ({saved.get(k)} -> {run_.resume_info[k]})" for k in _RESUME_KEYS
               if saved.get(k) != run_.resume_info[k]]
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

"""`vary train`: train a Vary model the way the original trains it, one stage per run.

Stages (training.md §1): `vocabulary` trains Vary-tiny (SAM vocabulary + projector + OPT, all
trainable; train_vocabulary.py), `pretrain` and `sft` train Vary-toy / Vary-base (projectors + LLM,
vision towers frozen; train_qwen.py); `sft` also post-trains GOT-OCR2.0 (got.py). This module is the loop they share: `run(TrainConfig)` loads the
start checkpoint through models/checkpoint.py, lets the family's `Recipe` set what trains, and optimizes with
AdamW (no decay on biases and LayerNorms), a cosine schedule with linear warm-up, gradient clipping
and accumulation, bf16/fp16 autocast on GPUs and optional gradient checkpointing. The loss is the
original's: mean cross-entropy over the answer tokens of each micro-batch, averaged over
micro-batches and processes.

Checkpoints are release directories (`OUT/checkpoint-N`, models/export.py) that `vary ocr --model` loads, plus
`training_state.pt` (state.py); the data position is the step itself, because each epoch's
order is a seeded permutation. `OUT/latest` names the newest complete checkpoint, and `resume`
continues from it exactly. The same command runs under `torchrun --nproc-per-node N`: DDP (gloo on
CPU, NCCL on CUDA) or, with `fsdp`, FSDP2 (dist.py). Progress goes to a `TrainProgress` the
caller passes in; metrics go to `OUT/metrics.jsonl` (one JSON object per logged step or evaluation).
"""

from __future__ import annotations

import contextlib
import functools
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch
import torch.nn as nn

from ..models.config import GotConfig, VaryConfig, VaryTinyConfig
from .dataset import DataReport, Sample, TrainDataset, check_images, collate, encode_all, file_fingerprint, read_samples
from ..errors import OutputError, VaryError
from ..models.export import read_latest, remove_stale
from .config import ADAM_BETAS, ADAM_EPS, TrainConfig
from .dist import Dist, StepBatches, autocast_dtype, setup_distributed, wrap
from .got import GotRecipe, hf_tokenizer_files
from .qwen import QwenRecipe
from .state import METRICS_FILE, Recipe, RunState, TrainingModel, TrainProgress, restore, resume_point, save, \
    trim_metrics, write_metrics
from .vocabulary import VocabularyRecipe, init_vocabulary

def _copy_files(*names: str) -> Callable[[Any], dict[str, bytes]]:
    """The start checkpoint's tokenizer files of these names, to be written into every checkpoint."""
    return lambda loaded: {name: (loaded.directory / name).read_bytes() for name in names
                           if (loaded.directory / name).is_file()}


# Which families each stage trains: the family's recipe, and the tokenizer files its checkpoints carry.
STAGE_RECIPES: dict[str, dict[type, tuple[type[Recipe], Callable[[Any], dict[str, bytes]]]]] = {
    "pretrain": {VaryConfig: (QwenRecipe, _copy_files("qwen.tiktoken"))},
    "sft": {VaryConfig: (QwenRecipe, _copy_files("qwen.tiktoken")), GotConfig: (GotRecipe, hf_tokenizer_files)},
    "vocabulary": {VaryTinyConfig: (VocabularyRecipe, _copy_files(
        "vocab.json", "merges.txt", "added_tokens.json", "special_tokens_map.json", "tokenizer_config.json",
        "tokenizer.json"))},
}
_FAMILY_NAMES = {VaryConfig: "Vary-toy/Vary-base (Qwen)", VaryTinyConfig: "Vary-tiny (OPT)", GotConfig: "GOT-OCR2"}


@dataclass
class TrainResult:
    """How a run ended: the last checkpoint and the last logged numbers."""

    checkpoint: Path | None
    steps: int
    loss: float | None
    eval_loss: float | None = None
    report: DataReport | None = None


def cosine_with_warmup(step: int, warmup: int, total: int) -> float:
    """Hugging Face's get_cosine_schedule_with_warmup factor (half a cosine, from 1 down to 0)."""
    if step < warmup:
        return step / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups as trainer_vit_fixlr.py makes them: decay on everything but biases and the weights
    of nn.LayerNorm modules. Qwen-1's RMSNorm and SAM's LayerNorm2d (our neck's layer_norm1/2) are not
    nn.LayerNorm there, so, as in the original, their weights are decayed. (Its 'vision_encoder' split
    matches no Vary parameter.)"""
    in_layernorm = {f"{module_name}.{name}" if module_name else name
                    for module_name, module in model.named_modules()
                    if isinstance(module, nn.LayerNorm) and ".neck." not in f".{module_name}"
                    for name, _ in module.named_parameters(recurse=False)}
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if "bias" in name or name in in_layernorm else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def enable_gradient_checkpointing(layers: Iterable[nn.Module]) -> None:
    """Recompute each decoder layer in the backward pass (transformers' GradientCheckpointingLayer hook)."""
    from torch.utils.checkpoint import checkpoint

    for layer in layers:
        layer.gradient_checkpointing = True
        layer._gradient_checkpointing_func = functools.partial(checkpoint, use_reentrant=False)


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


def _load_recipe(cfg: TrainConfig, dist: Dist, device: torch.device, start_dir: Path | None) -> Recipe:
    """Load the start checkpoint (rank 0 first, so a hub download happens once) into its stage's recipe."""
    from ..models.checkpoint import load, load_directory

    loaded = None
    for turn in (True, False):
        if dist.main == turn:
            loaded = (load_directory(start_dir, device, torch.float32) if start_dir is not None
                      else load(cfg.model, device=str(device), dtype="fp32"))
        dist.barrier()
    assert loaded is not None
    recipes = STAGE_RECIPES[cfg.stage]
    if type(loaded.config) not in recipes:
        raise VaryError(f"--{cfg.stage} trains {' or '.join(_FAMILY_NAMES[f] for f in recipes)}, but "
                        f"{loaded.directory} is {_FAMILY_NAMES[type(loaded.config)]}; choose a matching --model")
    recipe_class, tokenizer_files = recipes[type(loaded.config)]
    return recipe_class(loaded.model, loaded.config, loaded.tokenizer, tokenizer_files(loaded))


def _run(cfg: TrainConfig, dist: Dist, device: torch.device, progress: TrainProgress) -> TrainResult:
    amp = autocast_dtype(cfg.dtype, device)
    out = Path(cfg.out)
    if dist.main:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"--out {out}: cannot create the directory ({exc.strerror or exc})") from None
        for path in remove_stale(out):
            progress.message(f"removed {path.name}, left by a run stopped while saving")
    dist.barrier()
    start_dir = read_latest(out)
    if start_dir is not None and not cfg.resume:
        raise VaryError(f"{out} already holds checkpoints ({start_dir.name}); pass --resume to continue "
                        "that run, or choose another --out")
    if cfg.resume and start_dir is None:
        progress.message(f"nothing to resume in {out}; starting from {cfg.model}")
    training_state = None
    if start_dir is not None:  # read before the model loads: a torn state falls back to an earlier checkpoint
        start_dir, training_state = resume_point(out, start_dir, progress.message)
    recipe = _load_recipe(cfg, dist, device, start_dir)
    model, config, tokenizer = recipe.model, recipe.config, recipe.tokenizer

    samples = read_data(cfg.data, config.prompt_style)
    check_images(samples)
    report = encode_all(samples, tokenizer, config, cfg.max_length)
    report.fingerprint = file_fingerprint(list(cfg.data))
    eval_set = None
    if cfg.eval_data:
        eval_samples = read_data(cfg.eval_data, config.prompt_style)
        check_images(eval_samples)
        encode_all(eval_samples, tokenizer, config, cfg.max_length)
        eval_set = TrainDataset(eval_samples, tokenizer, config, cfg.max_length)

    global_batch = cfg.batch_size * cfg.grad_accum * dist.world
    steps_per_epoch = math.ceil(len(samples) / global_batch)
    total = cfg.max_steps if cfg.max_steps is not None else cfg.epochs * steps_per_epoch
    warmup = math.ceil(cfg.warmup_ratio * total)
    resume_info = {"stage": cfg.stage, "data_fingerprint": report.fingerprint, "global_batch": global_batch,
                   "max_length": cfg.max_length, "seed": cfg.seed, "epochs": cfg.epochs,
                   "max_steps": cfg.max_steps, "learning_rate": cfg.learning_rate,
                   "warmup_ratio": cfg.warmup_ratio, "weight_decay": cfg.weight_decay,
                   "freeze_lm": cfg.freeze_lm, "fsdp": cfg.fsdp, "dropout": cfg.dropout,
                   "train_encoder": cfg.train_encoder}

    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    if start_dir is None and cfg.stage == "vocabulary":
        done = init_vocabulary(model, cfg.vocabulary_init)
        if done:
            progress.message(f"vision vocabulary: {done}")
    model.train()
    recipe.prepare(cfg)
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(recipe.layers())
    wrapped = wrap(TrainingModel(model, recipe.loss), recipe.layers(), cfg.fsdp, dist, device)
    optimizer = torch.optim.AdamW(parameter_groups(model, cfg.weight_decay), lr=cfg.learning_rate,
                                  betas=ADAM_BETAS, eps=ADAM_EPS)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, functools.partial(cosine_with_warmup, warmup=warmup, total=total))
    scaler = torch.amp.GradScaler(device.type) if amp == torch.float16 else None
    run_ = RunState(cfg, dist, device, amp, recipe, wrapped, optimizer, scheduler, scaler, resume_info, progress,
                    out / METRICS_FILE, eval_set)

    start = 0
    if start_dir is not None:
        start = restore(run_, start_dir, training_state)
        training_state = None  # the optimizer holds its own copy now
    if dist.main:
        trim_metrics(run_.metrics, start)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    progress.started({"total_steps": total, "start_step": start, "samples": len(samples),
                      "global_batch": global_batch, "steps_per_epoch": steps_per_epoch, "warmup_steps": warmup,
                      "trainable_parameters": trainable, "device": str(device), "world": dist.world,
                      "autocast": str(amp).removeprefix("torch.") if amp else "fp32", "report": report,
                      "resumed_from": str(start_dir) if start_dir else None})

    dataset = TrainDataset(samples, tokenizer, config, cfg.max_length)
    sampler = StepBatches(len(samples), cfg.batch_size, cfg.grad_accum, dist.world, dist.rank, cfg.seed,
                          start, total)
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, num_workers=cfg.workers, pin_memory=device.type == "cuda",
        collate_fn=functools.partial(collate, pad_id=recipe.pad_id), persistent_workers=False,
        # Its own generator: drawing the workers' base seed from torch's global RNG would shift the
        # dropout masks of a resumed run (the global RNG is restored from the checkpoint).
        generator=torch.Generator().manual_seed(cfg.seed + start))
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
        recipe.finish()
    final = out / f"checkpoint-{last_saved}" if last_saved is not None else None
    return TrainResult(final, total, last_loss, run_.last_eval, report)


def _forward(run_: RunState, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    device = run_.device
    with torch.autocast(device.type, dtype=run_.amp or torch.float32, enabled=run_.amp is not None):
        return run_.wrapped(**batch)


def train_step(run_: RunState, batches: Iterator[dict[str, torch.Tensor]]) -> tuple[float, int]:
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
            total, count = _forward(run_, batch)
            # The original's loss: each micro-batch's token mean, averaged over micro-batches.
            loss = total / count.clamp(min=1)
            scaled = loss / cfg.grad_accum
            (run_.scaler.scale(scaled) if run_.scaler else scaled).backward()
        losses.append(loss.item())
        tokens += int(count)
    return run_.dist.mean(sum(losses) / len(losses), device), int(run_.dist.sum([tokens], device)[0])


def clip_and_step(run_: RunState) -> float:
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
def evaluate(run_: RunState, step: int) -> float:
    """Token-weighted mean loss over the eval data (each process takes every world-th sample)."""
    assert run_.eval_data is not None
    cfg, dist, device = run_.cfg, run_.dist, run_.device
    indices = list(range(dist.rank, len(run_.eval_data), dist.world))
    loss_sum, count = 0.0, 0
    run_.model.eval()  # no dropout while measuring (Vary-tiny's OPT)
    # FSDP needs every process in every forward: pad the shorter shards with a repeat counted as nothing.
    rounds = math.ceil(math.ceil(len(run_.eval_data) / dist.world) / cfg.batch_size)
    for r in range(rounds):
        chunk = indices[r * cfg.batch_size:(r + 1) * cfg.batch_size]
        weight = 1.0 if chunk else 0.0
        batch = collate([run_.eval_data[i] for i in (chunk or [0])], run_.recipe.pad_id)
        total, n = _forward(run_, {k: v.to(device) for k, v in batch.items()})
        loss_sum += weight * float(total)
        count += int(weight * int(n))
    run_.model.train()
    loss_sum, count = dist.sum([loss_sum, float(count)], device)
    eval_loss = loss_sum / max(count, 1)
    run_.last_eval = eval_loss
    metrics = {"step": step, "eval_loss": eval_loss, "eval_tokens": int(count)}
    if cfg.eval_generate:
        run_.model.eval()
        metrics.update(generated_metrics(run_))
        run_.model.train()
    write_metrics(run_, metrics)
    run_.progress.evaluated(metrics)
    return eval_loss


def generation_budget(answer_tokens: int, max_length: int) -> int:
    """New tokens allowed for an eval sample: twice its answer plus 16, at most --max-length.

    A page decoded past twice its reference length is already at edit distance >= 0.5; stopping there
    keeps each evaluation's time bounded while a random early model loops.
    """
    return max(1, min(max_length, 2 * answer_tokens + 16))


def generated_metrics(run_: RunState) -> dict[str, float]:
    """Greedy decodes of the first --eval-generate eval samples with images, scored as the paper scores pages:
    mean normalized edit distance and token-set F1 (eval/metrics.py, Fox's tokenization). Every process
    decodes the same samples (FSDP needs all of them in each forward); only the main one logs."""
    from ..convert.pipeline import ImageItem, read_images
    from ..engine.config import GenerationConfig
    from ..eval.metrics import edit_distance, set_scores
    from ..eval.tokens import tokenize_pair
    from ..models.loaded import LoadedModel
    from .dataset import IMAGE_PLACEHOLDER

    cfg, recipe, device = run_.cfg, run_.recipe, run_.device
    loaded = LoadedModel(recipe.model, recipe.tokenizer, recipe.config, Path(cfg.out), device, torch.float32)
    samples = [s for s in run_.eval_data.samples if s.image is not None][:cfg.eval_generate]
    items = []
    for index, sample in enumerate(samples):
        question, answer = sample.turns[0][1], sample.turns[1][1]
        # Vary-tiny's vocabulary stage sees the image alone (its "" prompt format); the others the question.
        prompt = "" if cfg.stage == "vocabulary" else question.replace(IMAGE_PLACEHOLDER, "").strip()
        budget = generation_budget(len(recipe.tokenizer.encode(answer)), cfg.max_length)
        items.append(ImageItem((index, answer), str(sample.image), sample.image, prompt, max_new_tokens=budget))
    gen = GenerationConfig(max_new_tokens=cfg.max_length)
    distances, f1s = [], []
    with _inference_attention(recipe.model), \
            torch.autocast(device.type, dtype=run_.amp or torch.float32, enabled=run_.amp is not None):
        for (_, answer), result in read_images(loaded, items, gen):
            text, truth = result.text.strip(), answer.strip()
            distances.append(edit_distance(text, truth))
            f1s.append(set_scores(*tokenize_pair(text, truth, "jieba"))[2])
    if not samples:
        return {}
    return {"eval_edit_distance": sum(distances) / len(samples), "eval_f1": sum(f1s) / len(samples),
            "eval_generated": len(samples)}


@contextlib.contextmanager
def _inference_attention(model: nn.Module) -> Iterator[None]:
    """Qwen-1's own attention (KV cache, log-n) while decoding; training switches Vary-Qwen to SDPA (qwen.py)."""
    config = getattr(model, "qwen2_config", None)
    if config is None:  # Vary-tiny's OPT trains and decodes with the same attention
        yield
        return
    from ..models.vary_qwen import ATTN_IMPLEMENTATION

    saved, config._attn_implementation = config._attn_implementation, ATTN_IMPLEMENTATION
    try:
        yield
    finally:
        config._attn_implementation = saved

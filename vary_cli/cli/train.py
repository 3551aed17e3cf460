"""`vary train` and `vary graft-vocabulary`: the Typer commands; cli/app.py mounts them with
`app.command()(train)` and `app.command("graft-vocabulary")(graft_vocabulary)`.

Flags map one-to-one onto `TrainConfig` fields (train/config.py). The command validates them, calls
`train.run` and draws a rich progress bar (loss, lr, samples/s, ETA) from its callbacks. Under torchrun
only rank 0 prints. torch is imported inside the body so `vary --help` stays fast.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from .common import fail, labelled, stderr
from ..errors import VaryError

def train(
    sft: Annotated[Optional[list[Path]], typer.Option(
        "--sft", show_default=False,
        help="Supervised fine-tuning (stage 3, lr 1e-5) on this data: JSONL or a JSON list of "
             "{image, conversations} or {image, text} samples; repeat for several files.")] = None,
    pretrain: Annotated[Optional[list[Path]], typer.Option(
        "--pretrain", show_default=False,
        help="Pretraining (stage 2, lr 5e-5) on this data, same format; repeat for several files.")] = None,
    vocabulary: Annotated[Optional[list[Path]], typer.Option(
        "--vocabulary", show_default=False,
        help="Vocabulary generation (stage 1, lr 5e-5) of Vary-tiny (--model vary-tiny or a Vary-tiny "
             "directory) on image + text pairs, same format; everything trains.")] = None,
    model: Annotated[Optional[str], typer.Option(
        "--model", "-m", show_default=False,
        help="Start checkpoint: a model name or a directory [default: vary-toy; vary-tiny for --vocabulary].")] = None,
    out: Annotated[Path, typer.Option(help="Output directory for checkpoint-N/, latest and metrics.jsonl.")] = Path("vary-train"),
    eval_data: Annotated[Optional[list[Path]], typer.Option(
        "--eval", show_default=False, help="Held-out data; its loss is reported at --eval-every steps.")] = None,
    eval_generate: Annotated[int, typer.Option(
        "--eval-generate", min=0, help="At each evaluation, greedily decode this many --eval samples and log their "
                                       "edit distance and F1 beside the loss.")] = 0,
    lr: Annotated[Optional[float], typer.Option(help="Peak learning rate [default: the stage's].")] = None,
    epochs: Annotated[int, typer.Option(help="Passes over the data, unless --max-steps.")] = 1,
    max_steps: Annotated[Optional[int], typer.Option(help="Optimizer steps in all (overrides --epochs).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(
        help="Samples per device per micro-step [default: 4; 16 for --vocabulary].", show_default=False)] = None,
    grad_accum: Annotated[int, typer.Option(help="Micro-steps per optimizer step.")] = 1,
    max_length: Annotated[Optional[int], typer.Option(
        help="Longest token sequence; longer samples are cut at the end [default: 4096; 512 for --vocabulary].",
        show_default=False)] = None,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay (not on biases and LayerNorms).")] = 0.0,
    warmup_ratio: Annotated[Optional[float], typer.Option(
        help="Fraction of steps of linear warm-up before the cosine decay [default: 0.03; 0 for --vocabulary].",
        show_default=False)] = None,
    max_grad_norm: Annotated[float, typer.Option(help="Gradient clipping norm (0: off).")] = 1.0,
    gradient_checkpointing: Annotated[Optional[bool], typer.Option(
        help="Recompute decoder layers in the backward pass to save memory [default: on; off for --vocabulary].",
        show_default=False)] = None,
    dropout: Annotated[Optional[float], typer.Option(
        help="OPT's residual dropout in --vocabulary training [default: 0.1, OPT-125M's].", show_default=False)] = None,
    vocabulary_init: Annotated[str, typer.Option(
        help="--vocabulary: where the SAM vocabulary starts: 'checkpoint' (the --model's), 'scratch', or a "
             "SAM ViT-B file (sam_vit_b_01ec64.pth) for the encoder, with new convs and projector.")] = "checkpoint",
    freeze_lm: Annotated[bool, typer.Option(
        "--freeze-lm", help="Train only the projectors and input embeddings (the original's freeze_lm_model).")] = False,
    train_encoder: Annotated[bool, typer.Option(
        "--train-encoder", help="GOT-OCR2 --sft only: also train the vision encoder and the projector's convs "
                                "(frozen by default, as in GOT's post-training).")] = False,
    save_every: Annotated[int, typer.Option(help="Checkpoint every this many steps, and at the end.")] = 5000,
    keep: Annotated[int, typer.Option(help="Newest checkpoints to keep.")] = 1,
    eval_every: Annotated[Optional[int], typer.Option(help="Evaluate every this many steps [default: at saves].")] = None,
    log_every: Annotated[int, typer.Option(help="Write a metrics line every this many steps.")] = 1,
    seed: Annotated[int, typer.Option(help="Seed of the data order and of torch.")] = 42,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT/latest exactly where it stopped.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps (torchrun: cuda:LOCAL_RANK).")] = "auto",
    dtype: Annotated[str, typer.Option(help="Autocast: auto (bf16 on GPUs, fp32 on CPU), fp32, bf16 or fp16.")] = "auto",
    fsdp: Annotated[bool, typer.Option("--fsdp", help="Under torchrun, shard the model with FSDP2 instead of DDP.")] = False,
    workers: Annotated[int, typer.Option(help="Data-loading worker processes.")] = 2,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors.")] = False,
) -> None:
    """Train a Vary model: --vocabulary DATA (stage 1, Vary-tiny), --pretrain DATA (stage 2) or --sft DATA
    (stage 3) of Vary-toy / Vary-base.

    Same command under `torchrun --nproc-per-node N` for several processes (DDP; --fsdp to shard).
    Checkpoints go to OUT/checkpoint-N in the release layout: `vary ocr --model OUT/checkpoint-N`
    (`--prompt ""` for a vocabulary-stage Vary-tiny); `vary graft-vocabulary` moves a trained vocabulary
    into Vary-toy / Vary-base.
    """
    try:
        stages = {name: data for name, data in (("sft", sft), ("pretrain", pretrain), ("vocabulary", vocabulary))
                  if data}
        if len(stages) != 1:
            raise typer.BadParameter("give exactly one of --vocabulary DATA, --pretrain DATA or --sft DATA")
        (stage, data), = stages.items()
        from ..train.config import TrainConfig

        cfg = TrainConfig(
            stage=stage, data=tuple(data), out=out,
            model=model or ("vary-tiny" if stage == "vocabulary" else "vary-toy"),
            eval_data=tuple(eval_data or ()), eval_generate=eval_generate, lr=lr, epochs=epochs, max_steps=max_steps, batch_size=batch_size,
            grad_accum=grad_accum, max_length=max_length, weight_decay=weight_decay, warmup_ratio=warmup_ratio,
            max_grad_norm=max_grad_norm, gradient_checkpointing=gradient_checkpointing, dropout=dropout,
            vocabulary_init=vocabulary_init, freeze_lm=freeze_lm, train_encoder=train_encoder,
            save_every=save_every, keep=keep, eval_every=eval_every, log_every=log_every, seed=seed,
            resume=resume, device=device, dtype=dtype, fsdp=fsdp, workers=workers)
        from ..train.loop import run

        with RichProgress() as progress:
            result = run(cfg, progress)
        if int(os.environ.get("RANK", "0")) == 0 and result.checkpoint:
            loss = f", loss {result.loss:.4f}" if result.loss is not None else " (nothing left to train)"
            stderr.print(f"done: {result.steps} steps{loss}; vary ocr --model {result.checkpoint} IMAGE")
    except VaryError as error:
        fail(error, debug)
    except KeyboardInterrupt:
        stderr.print("interrupted; continue with --resume")
        raise typer.Exit(code=130) from None


def graft_vocabulary(
    vocabulary: Annotated[str, typer.Option(
        "--vocabulary", show_default=False,
        help="A Vary-tiny checkpoint (a directory, a `vary train --vocabulary` --out, or a model name) whose "
             "SAM vocabulary (encoder, neck, net_2, net_3) is taken.")],
    into: Annotated[str, typer.Option(
        "--into", show_default=False, help="The Vary-toy / Vary-base checkpoint (directory or model name) to put it in.")],
    out: Annotated[Path, typer.Option(
        "--out", show_default=False, help="The new checkpoint directory (must not exist).")],
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors.")] = False,
) -> None:
    """Put a vocabulary-stage vision vocabulary into a Vary-toy / Vary-base checkpoint.

    Writes OUT: INTO's files and tensors, with `transformer.vision_tower_high.*` replaced by the Vary-tiny
    checkpoint's SAM encoder and convs (its projector and OPT are not used). Then train the projectors and
    the LLM with `vary train --pretrain DATA --model OUT`.
    """
    try:
        from ..train.graft import graft_vocabulary as graft

        result = graft(vocabulary, into, out)
        stderr.print(f"wrote {result.directory}: {result.grafted} vision-vocabulary tensors grafted, "
                     f"{result.kept} kept")
    except VaryError as error:
        fail(error, debug)


class RichProgress:
    """TrainProgress drawn with rich: one bar with loss, lr, samples/s and ETA; messages above it."""

    def __enter__(self) -> "RichProgress":
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("step"), MofNCompleteColumn(), BarColumn(),
                            TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=stderr,
                            disable=not stderr.is_terminal)
        self.task = None
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)

    def started(self, info: dict[str, Any]) -> None:
        report = info["report"]
        stderr.print(f"{info['samples']} samples ({report.with_image} with images, {report.target_tokens} answer "
                     f"tokens), global batch {info['global_batch']}, {info['total_steps']} steps, "
                     f"{info['trainable_parameters'] / 1e6:.1f}M trainable parameters, {info['device']} x "
                     f"{info['world']}, autocast {info['autocast']}")
        for warning in report.warnings:
            stderr.print(labelled("warning:", "yellow", warning))
        if info["resumed_from"]:
            stderr.print(f"resuming from {info['resumed_from']} at step {info['start_step']}")
        self.task = self.bar.add_task("train", total=info["total_steps"], completed=info["start_step"], info="")

    def step(self, m: dict[str, Any]) -> None:
        info = f"loss {m['loss']:.4f}  lr {m['lr']:.2e}  {m['samples_per_s']:.1f} samples/s"
        if self.task is not None:
            self.bar.update(self.task, completed=m["step"], info=info)
        if not stderr.is_terminal:
            stderr.print(f"step {m['step']}: {info}, eta {m['eta_s']:.0f}s")

    def evaluated(self, m: dict[str, Any]) -> None:
        extra = (f", edit distance {m['eval_edit_distance']:.4f}, F1 {m['eval_f1']:.4f} on {m['eval_generated']} "
                 "decoded samples") if "eval_edit_distance" in m else ""
        self.bar.console.print(f"step {m['step']}: eval loss {m['eval_loss']:.4f}{extra}")

    def saved(self, directory: Path) -> None:
        self.bar.console.print(f"saved {directory}")

    def message(self, text: str) -> None:
        self.bar.console.print(text)

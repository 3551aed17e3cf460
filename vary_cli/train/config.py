"""`TrainConfig`: every setting of `vary train`, validated at construction; no torch here.

The defaults of the pretraining and SFT stages are the original's launch command for Vary-base (Vary
README; training.md §1): `--model_max_length 4096 --gradient_checkpointing True --weight_decay 0.
--warmup_ratio 0.03 --lr_scheduler_type cosine --per_device_train_batch_size 4
--gradient_accumulation_steps 1 --save_steps 5000 --save_total_limit 1 --num_train_epochs 1`, AdamW (HF
`adamw_torch`: betas 0.9/0.999, eps 1e-8, gradient clipping at 1.0), bf16 on GPU; learning rate 5e-5
for pretraining and 1e-5 for SFT (the paper). The vocabulary stage (Vary-tiny) takes the Vary README's
Vary-tiny command instead: `--per_device_train_batch_size 16 --num_train_epochs 1 --learning_rate 5e-5`
with arguments.py's `model_max_length` 512 and HF's defaults (no warm-up, no weight decay, no gradient
checkpointing), and OPT-125M's residual dropout 0.1 (its config.json), which the original trains with.
Fields left at None take their stage's default (`STAGE_DEFAULTS`). `cli/train.py` maps its flags
one-to-one onto these fields; `train.run` reads them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import VaryError

STAGES = ("sft", "pretrain", "vocabulary")
STAGE_LR = {"pretrain": 5e-5, "sft": 1e-5, "vocabulary": 5e-5}
_QWEN_DEFAULTS = {"batch_size": 4, "max_length": 4096, "warmup_ratio": 0.03, "gradient_checkpointing": True,
                  "dropout": 0.0}
STAGE_DEFAULTS: dict[str, dict[str, Any]] = {
    "pretrain": _QWEN_DEFAULTS,
    "sft": _QWEN_DEFAULTS,
    "vocabulary": {"batch_size": 16, "max_length": 512, "warmup_ratio": 0.0, "gradient_checkpointing": False,
                   "dropout": 0.1},
}
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


@dataclass(frozen=True)
class TrainConfig:
    """One training run."""

    stage: str
    """'vocabulary' (stage 1, Vary-tiny), 'pretrain' (stage 2) or 'sft' (stage 3): `--vocabulary DATA`,
    `--pretrain DATA` / `--sft DATA`."""
    data: tuple[Path, ...]
    """Training data files (JSONL or a JSON list); several are concatenated."""
    out: Path
    """Output directory: checkpoint-N/ release directories, `latest`, metrics.jsonl (`--out`)."""
    model: str = "vary-toy"
    """Start checkpoint: a registry name or a release-layout directory (`--model`)."""
    eval_data: tuple[Path, ...] = ()
    """Held-out data whose loss is reported every --eval-every steps and at the end (`--eval`)."""
    lr: float | None = None
    """Peak learning rate (`--lr`); None takes the stage's."""
    epochs: int = 1
    """Passes over the data (`--epochs`), unless --max-steps is given."""
    max_steps: int | None = None
    """Optimizer steps in all (`--max-steps`); overrides --epochs."""
    batch_size: int | None = None
    """Samples per device per micro-step (`--batch-size`; 4, or 16 for the vocabulary stage)."""
    grad_accum: int = 1
    """Micro-steps per optimizer step (`--grad-accum`); global batch = batch x accum x processes."""
    max_length: int | None = None
    """Longest token sequence; longer samples are cut at the end (`--max-length`; 4096, vocabulary 512)."""
    weight_decay: float = 0.0
    """AdamW weight decay on weights other than biases and LayerNorms (`--weight-decay`)."""
    warmup_ratio: float | None = None
    """Fraction of the steps with linear warm-up before the cosine decay (`--warmup-ratio`; 0.03,
    vocabulary 0)."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm; 0 disables (`--max-grad-norm`)."""
    gradient_checkpointing: bool | None = None
    """Recompute decoder layers in the backward pass to save memory (`--gradient-checkpointing`; on,
    off for the vocabulary stage)."""
    dropout: float | None = None
    """OPT's residual dropout while training the vocabulary stage (`--dropout`; OPT-125M's 0.1)."""
    vocabulary_init: str = "checkpoint"
    """Start of the vision vocabulary in the vocabulary stage (`--vocabulary-init`): 'checkpoint' (the
    --model's), 'scratch' (random, as the original builds it), or a SAM ViT-B checkpoint file
    (segment-anything's sam_vit_b_01ec64.pth) for the SAM encoder, with new convs and projector."""
    freeze_lm: bool = False
    """Train only the projectors and the input embeddings (the original's --freeze_lm_model)."""
    train_encoder: bool = False
    """GOT-OCR2 only: also train its vision encoder and the projector's convs (`--train-encoder`; the
    paper's stage 2); frozen by default, as in its post-training."""
    save_every: int = 5000
    """Write a checkpoint every this many steps, and at the end (`--save-every`)."""
    keep: int = 1
    """How many of the newest checkpoints to keep (`--keep`; the original's save_total_limit)."""
    eval_generate: int = 0
    """Greedy-decode this many eval samples (with images) at each evaluation and log their edit distance and
    F1 beside the loss (`--eval-generate`)."""
    eval_every: int | None = None
    """Evaluate every this many steps (`--eval-every`); default: at each save."""
    log_every: int = 1
    """Write a metrics line every this many steps (`--log-every`)."""
    seed: int = 42
    """Seed of the data order and of torch (`--seed`)."""
    resume: bool = False
    """Continue from `OUT/latest` exactly where it stopped (`--resume`)."""
    device: str = "auto"
    """auto, cpu, cuda, cuda:N or mps; under torchrun each process takes cuda:LOCAL_RANK (`--device`)."""
    dtype: str = "auto"
    """Autocast dtype: auto (bf16 on GPUs, none on CPU), fp32, bf16 or fp16; weights stay fp32 (`--dtype`)."""
    fsdp: bool = False
    """Shard parameters, gradients and optimizer state across processes (FSDP2) instead of DDP (`--fsdp`)."""
    workers: int = 2
    """Data-loading worker processes (`--workers`; 0 loads in the training process)."""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    """Not a flag: test and benchmark hooks."""

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise VaryError(f"stage must be one of {STAGES}, got {self.stage!r}")
        if not self.data:
            raise VaryError(f"give the training data with --{self.stage} DATA")
        if self.train_encoder and self.stage != "sft":
            raise VaryError("--train-encoder applies to GOT-OCR2's --sft only")
        if self.stage != "vocabulary":
            if self.dropout:
                raise VaryError("--dropout applies to the vocabulary stage (Vary-tiny's OPT) only")
            if self.vocabulary_init != "checkpoint":
                raise VaryError("--vocabulary-init applies to the vocabulary stage (--vocabulary DATA) only")
        for name, value in STAGE_DEFAULTS[self.stage].items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        if not 0 <= self.dropout < 1:
            raise VaryError(f"--dropout must be in [0, 1), got {self.dropout}")
        positive = {"--batch-size": self.batch_size, "--grad-accum": self.grad_accum, "--epochs": self.epochs,
                    "--save-every": self.save_every, "--log-every": self.log_every, "--max-length": self.max_length}
        if self.max_steps is not None:
            positive["--max-steps"] = self.max_steps
        if self.eval_every is not None:
            positive["--eval-every"] = self.eval_every
        for flag, value in positive.items():
            if value < 1:
                raise VaryError(f"{flag} must be at least 1, got {value}")
        if self.lr is not None and not self.lr > 0:
            raise VaryError(f"--lr must be > 0, got {self.lr}")
        if not 0 <= self.warmup_ratio < 1:
            raise VaryError(f"--warmup-ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.weight_decay < 0 or self.max_grad_norm < 0:
            raise VaryError("--weight-decay and --max-grad-norm must be >= 0")
        if self.keep < 1:
            raise VaryError(f"--keep must be at least 1, got {self.keep}")
        if self.workers < 0:
            raise VaryError(f"--workers must be >= 0, got {self.workers}")
        if self.eval_generate < 0:
            raise VaryError(f"--eval-generate must be >= 0, got {self.eval_generate}")
        if self.eval_generate and not self.eval_data:
            raise VaryError("--eval-generate needs --eval DATA")
        if self.eval_every is not None and not self.eval_data:
            raise VaryError("--eval-every needs --eval DATA")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else STAGE_LR[self.stage]

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("extra")
        return {k: ([str(p) for p in v] if isinstance(v, tuple) else str(v) if isinstance(v, Path) else v)
                for k, v in out.items()}

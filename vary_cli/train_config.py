"""`TrainConfig`: every setting of `vary train`, validated at construction; no torch here.

The defaults are the original's launch command for Vary-base (Vary README; training.md §1):
`--model_max_length 4096 --gradient_checkpointing True --weight_decay 0. --warmup_ratio 0.03
--lr_scheduler_type cosine --per_device_train_batch_size 4 --gradient_accumulation_steps 1
--save_steps 5000 --save_total_limit 1 --num_train_epochs 1`, AdamW (HF `adamw_torch`: betas 0.9/0.999,
eps 1e-8, gradient clipping at 1.0), bf16 on GPU; learning rate 5e-5 for pretraining and 1e-5 for SFT
(the paper). `cli_train.py` maps its flags one-to-one onto these fields; `train.run` reads them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import VaryError

STAGES = ("sft", "pretrain")
STAGE_LR = {"pretrain": 5e-5, "sft": 1e-5}
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


@dataclass(frozen=True)
class TrainConfig:
    """One training run."""

    stage: str
    """'pretrain' (stage 2, lr 5e-5) or 'sft' (stage 3, lr 1e-5): `--pretrain DATA` / `--sft DATA`."""
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
    batch_size: int = 4
    """Samples per device per micro-step (`--batch-size`)."""
    grad_accum: int = 1
    """Micro-steps per optimizer step (`--grad-accum`); global batch = batch x accum x processes."""
    max_length: int = 4096
    """Longest token sequence; longer samples are cut at the end (`--max-length`)."""
    weight_decay: float = 0.0
    """AdamW weight decay on weights other than biases and LayerNorms (`--weight-decay`)."""
    warmup_ratio: float = 0.03
    """Fraction of the steps with linear warm-up before the cosine decay (`--warmup-ratio`)."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm; 0 disables (`--max-grad-norm`)."""
    gradient_checkpointing: bool = True
    """Recompute decoder layers in the backward pass to save memory (`--gradient-checkpointing`)."""
    freeze_lm: bool = False
    """Train only the projectors and the input embeddings (the original's --freeze_lm_model)."""
    save_every: int = 5000
    """Write a checkpoint every this many steps, and at the end (`--save-every`)."""
    keep: int = 1
    """How many of the newest checkpoints to keep (`--keep`; the original's save_total_limit)."""
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

"""Helpers for the training tests: tiny page images and data files beside them, and a fast TrainConfig."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw

from vary_cli.train.config import TrainConfig

ANSWERS = ("alpha 12", "beta 345", "gamma 6789", "delta 0")


def page(path: Path, index: int) -> Path:
    """A distinct synthetic page per index: stripes and a label, so the vision features differ."""
    image = Image.new("RGB", (64, 80), "white")
    draw = ImageDraw.Draw(image)
    for k in range(index + 1):
        draw.rectangle((4 + 12 * k, 4, 10 + 12 * k, 70), fill=(40 * k, 0, 200 - 40 * k))
    draw.text((6, 60), str(index), fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def write_data(directory: Path, answers=ANSWERS, name: str = "train.jsonl", pairs: bool = False) -> Path:
    """A JSONL file whose samples show page i and answer answers[i] (conversations, or OCR pairs)."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, answer in enumerate(answers):
        page(directory / "pages" / f"{i}.png", i)
        if pairs:
            lines.append({"image": f"pages/{i}.png", "text": answer})
        else:
            lines.append({"image": f"pages/{i}.png", "conversations": [
                {"from": "human", "value": "<image>\nProvide the ocr results of this image."},
                {"from": "gpt", "value": answer}]})
    path = directory / name
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def fast_config(model: Path, data: Path, out: Path, **changes) -> TrainConfig:
    """Settings for a tiny CPU run: no workers, no checkpointing of layers, fp32."""
    settings = dict(stage="sft", data=(data,), out=out, model=str(model), device="cpu", dtype="fp32",
                    batch_size=2, grad_accum=1, max_length=256, gradient_checkpointing=False, workers=0,
                    lr=1e-3, max_steps=4, save_every=100, warmup_ratio=0.0)
    settings.update(changes)
    return TrainConfig(**settings)


def weights(directory: Path) -> dict:
    """The tensors of a checkpoint directory we wrote, by release name."""
    from safetensors.torch import load_file

    out = {}
    for path in sorted(Path(directory).glob("*.safetensors")):
        out.update(load_file(str(path)))
    return out


if __name__ == "__main__":  # a torchrun worker: python -m torch.distributed.run ... train_fixtures.py JSON
    import sys

    from vary_cli.train.loop import run

    settings = json.loads(sys.argv[1])
    model, data, out = (Path(settings.pop(k)) for k in ("model", "data", "out"))
    run(fast_config(model, data, out, **settings))

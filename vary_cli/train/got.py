"""GOT-OCR2.0's supervised fine-tuning (`vary train --sft DATA --model got-ocr2`): the stage the GOT paper
calls post-training (its stage 3), with the training-mode forward, the loss and what trains.

As in the original's training code, the SAM encoder and its two stride-2 convs (the original's
`vision_tower_high`) run without gradients; the linear projector (`mm_projector_vary`) and the Qwen2
decoder train, or with `freeze_lm` only the projector and the input embeddings (the original's
`freeze_lm_model`; the embeddings are the tied head). `train_encoder` also trains the encoder and the
convs (the paper's joint stage 2). The data, template and masking are Vary-toy's (dataset.py): the loss
is on the assistant turns only. Checkpoints are written in the hf release's layout (export.py), which
transformers' `GotOcr2ForConditionalGeneration` and `GotOcr2Processor` load; a run started from the
original layout gets the `tokenizer.json` transformers' converter makes from its `qwen.tiktoken`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from ..models.got_ocr2 import GotOcr2ForCausalLM
from ..models.loaded import LoadedModel
from .config import TrainConfig
from .qwen import QwenRecipe, merge_images
from .state import target_loss

HF_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def set_trainable(model: GotOcr2ForCausalLM, freeze_lm: bool, train_encoder: bool) -> None:
    model.requires_grad_(False)
    trainable = [model.multi_modal_projector.multimodal_projector, model.embed_tokens]
    if train_encoder:
        trainable += [model.vision_tower_high, model.multi_modal_projector]
    if not freeze_lm:
        trainable += [model.layers, model.norm, model.lm_head]
    for module in trainable:
        module.requires_grad_(True)


def lm_hidden(model: GotOcr2ForCausalLM, embeds: torch.Tensor) -> torch.Tensor:
    """Final decoder hidden states (B, T, W): positions 0..T-1, causal attention (SDPA's own mask). Right
    padding needs no mask: a real token never attends to the padding after it, which carries no label."""
    batch, length = embeds.shape[:2]
    positions = torch.arange(length, device=embeds.device).expand(batch, length)  # (B, T)
    cos_sin = model.rotary_emb(embeds, positions)
    hidden = embeds
    for layer in model.layers:
        hidden = layer(hidden, attention_mask=None, position_embeddings=cos_sin, vary_cache=None)
    return hidden  # (B, T, W)


def batch_loss(model: GotOcr2ForCausalLM, input_ids: torch.Tensor, labels: torch.Tensor,
               sam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of token cross-entropies, number of target tokens): logits[:-1] against labels[1:].

    sam: (B, 3, S, S), one 1024² view per sample (all zeros for a sample without an image).
    """
    hidden = lm_hidden(model, merge_images(model, input_ids, model.encode_images(sam)))  # (B, T, W)
    return target_loss(hidden, labels, lambda states: model.lm_head(model.norm(states)))


def hf_tokenizer_files(loaded: LoadedModel) -> dict[str, bytes]:
    """The hf release's tokenizer files for the checkpoints: the start checkpoint's own, or those
    `converted_tokenizer_files` makes from the original layout's `qwen.tiktoken`."""
    directory = loaded.directory
    if loaded.config.layout == "hf":
        return {name: (directory / name).read_bytes() for name in HF_TOKENIZER_FILES if (directory / name).is_file()}
    return converted_tokenizer_files(directory / "qwen.tiktoken")


def converted_tokenizer_files(tiktoken: Path) -> dict[str, bytes]:
    """What convert_got_ocr2_weights_to_hf.py makes of a `qwen.tiktoken` with transformers'
    TikTokenConverter: the hf release's tokenizer files (the same ids: `QwenTokenizer` reads both)."""
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    from ..text.qwen_tokenizer import GOT_PATTERN, SPECIAL_TOKENS

    converter = TikTokenConverter(vocab_file=str(tiktoken), pattern=GOT_PATTERN,
                                  extra_special_tokens=list(SPECIAL_TOKENS))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=converter.converted(), model_max_length=8000,
                                        model_input_names=["input_ids", "attention_mask"],
                                        pad_token="<|endoftext|>", bos_token="<|endoftext|>",
                                        eos_token="<|endoftext|>")
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        return {name: (Path(tmp) / name).read_bytes() for name in HF_TOKENIZER_FILES if (Path(tmp) / name).is_file()}


class GotRecipe(QwenRecipe):
    """GOT-OCR2.0 in supervised fine-tuning (post-training): Vary-toy's padding and layers, its own loss
    and freezing (its attention is already SDPA)."""

    loss = staticmethod(batch_loss)

    def prepare(self, cfg: TrainConfig) -> None:
        set_trainable(self.model, cfg.freeze_lm, cfg.train_encoder)

    def finish(self) -> None:
        pass

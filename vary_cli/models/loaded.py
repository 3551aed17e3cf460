"""A loaded model ready to run: the family's tokenizer, its prompt ids, stop ids and page encoding.

`checkpoint.load` reads a release and returns a `LoadedModel`; everything that runs the model
(`convert/pipeline.py`, `vary train`'s sample decoding, the benchmarks) goes through it, so loading
(checkpoint.py) knows nothing of prompts or pixels and running knows nothing of files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..text.gpt2_tokenizer import OPTTokenizer
from ..text.prompts import build_prompt_ids, build_tiny_prompt_ids, resolve_prompt
from ..text.qwen_tokenizer import QwenTokenizer
from .config import ModelConfig, VaryTinyConfig
from .preprocess import linear_imagenet_pixels, preprocess_page, sam_pixels
from .vary_opt import VaryOPTForCausalLM
from .vary_qwen import VaryQwenForCausalLM


@dataclass
class LoadedModel:
    """A model ready for inference, with what is needed to prompt it.

    The pipeline talks to every model family through these methods only: the prompt's ids, the stop
    ids, and the image features of a batch of pages.
    """

    model: VaryQwenForCausalLM | VaryOPTForCausalLM
    tokenizer: QwenTokenizer | OPTTokenizer
    config: ModelConfig
    directory: Path
    device: torch.device
    dtype: torch.dtype

    @property
    def is_tiny(self) -> bool:
        return isinstance(self.config, VaryTinyConfig)

    def prompt_ids(self, prompt: str) -> list[int]:
        """Token ids of the release's conversation template around `prompt` (a preset name or text).

        For Vary-tiny an empty prompt selects the image-only (vocabulary-stage) format.
        """
        text = resolve_prompt(prompt, self.config.prompt_style)
        if self.is_tiny:
            return build_tiny_prompt_ids(self.tokenizer, text, self.config.image_token_len)
        return build_prompt_ids(self.tokenizer, text, style=self.config.prompt_style,
                                image_token_len=self.config.image_token_len)

    @property
    def stop_ids(self) -> set[int]:
        if self.is_tiny:
            return {self.tokenizer.eos_id}  # </s>
        return {self.tokenizer.im_end_id, self.tokenizer.endoftext_id}

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_id if self.is_tiny else self.tokenizer.endoftext_id

    def encode_pages(self, images: list, prompt: str = "ocr", vision_batch: int | None = None) -> torch.Tensor:
        """Image features (B, N, W) of RGB PIL pages, on the model's device and dtype.

        `prompt` matters to Vary-tiny only, whose two prompt formats were trained on differently
        preprocessed pages: "" (image tokens alone) takes the vocabulary stage's preprocessing.
        `vision_batch` pages go through the vision towers at a time; by default all of them on a GPU
        and one on a CPU, where batching gains nothing and SAM's global attention (12 x 4096² floats per
        page per layer) only costs memory: bench/bench_infer.py measured 10.2 s/page one at a time
        against 17.1 s/page and 20 GiB of RSS eight at a time.
        """
        vision_batch = vision_batch or (1 if self.device.type == "cpu" else len(images))
        with torch.inference_mode():
            return torch.cat([self._encode(images[i:i + vision_batch], prompt)
                              for i in range(0, len(images), vision_batch)])

    def _encode(self, images: list, prompt: str) -> torch.Tensor:
        if self.is_tiny:
            image_only = resolve_prompt(prompt, self.config.prompt_style) == ""
            to_pixels = linear_imagenet_pixels if image_only else sam_pixels
            sam = torch.stack([to_pixels(image, self.config.sam) for image in images])  # (B, 3, 1024, 1024)
            return self.model.encode_images(sam.to(self.device, self.dtype))
        pages = [preprocess_page(image, self.config) for image in images]
        clip = torch.stack([p.clip for p in pages]).to(self.device, self.dtype)  # (B, 3, 224, 224)
        sam = torch.stack([p.sam for p in pages]).to(self.device, self.dtype)  # (B, 3, 1024, 1024)
        return self.model.encode_images(clip, sam)

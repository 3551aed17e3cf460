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

    def prepare_page(self, image, prompt: str = "ocr") -> tuple["PageInput", list[int]]:
        """A page as the engine takes it: its preprocessed pixels and the prompt's token ids.

        This is the one hook a model family gives the engine per page (CPU work, done before the page
        joins a batch); a family whose prompt depends on the image (GOT's crops) answers per page.
        """
        return PageInput(self._pixels(image, prompt)), self.prompt_ids(prompt)

    def encode_inputs(self, inputs: list["PageInput"], vision_batch: int | None = None) -> torch.Tensor:
        """Image features (B, N, W) of prepared pages, on the model's device and dtype.

        `vision_batch` pages go through the vision towers at a time; by default all of them on a GPU
        and one on a CPU, where batching gains nothing and SAM's global attention (12 x 4096² floats per
        page per layer) only costs memory: bench/bench_infer.py measured 10.2 s/page one at a time
        against 17.1 s/page and 20 GiB of RSS eight at a time.
        """
        vision_batch = vision_batch or (1 if self.device.type == "cpu" else len(inputs))
        with torch.inference_mode():
            return torch.cat([self._encode(inputs[i:i + vision_batch]) for i in range(0, len(inputs), vision_batch)])

    def encode_pages(self, images: list, prompt: str = "ocr", vision_batch: int | None = None) -> torch.Tensor:
        """Image features (B, N, W) of RGB PIL pages (`prepare_page` then `encode_inputs`).

        `prompt` matters to Vary-tiny only, whose two prompt formats were trained on differently
        preprocessed pages: "" (image tokens alone) takes the vocabulary stage's preprocessing.
        """
        return self.encode_inputs([PageInput(self._pixels(image, prompt)) for image in images], vision_batch)

    def _pixels(self, image, prompt: str) -> tuple[torch.Tensor, ...]:
        """The page's pixel tensors, one per vision tower, in the order `encode_images` takes them."""
        if self.is_tiny:
            image_only = resolve_prompt(prompt, self.config.prompt_style) == ""
            to_pixels = linear_imagenet_pixels if image_only else sam_pixels
            return (to_pixels(image, self.config.sam),)  # (3, 1024, 1024)
        page = preprocess_page(image, self.config)
        return page.clip, page.sam  # (3, 224, 224), (3, 1024, 1024)

    def _encode(self, inputs: list["PageInput"]) -> torch.Tensor:
        towers = zip(*(page.pixels for page in inputs))
        stacked = [torch.stack(pixels).to(self.device, self.dtype) for pixels in towers]  # (B, 3, H, W) each
        return self.model.encode_images(*stacked)


@dataclass(frozen=True)
class PageInput:
    """One page's preprocessed pixels, ready to be stacked with other pages' into a batch."""

    pixels: tuple[torch.Tensor, ...]

"""A loaded model ready to run: the family's tokenizer, its prompt ids, stop ids and page encoding.

`checkpoint.load` reads a release and returns a `LoadedModel`; everything that runs the model
(`convert/pipeline.py`, `vary train`'s sample decoding, the benchmarks) goes through it, so loading
(checkpoint.py) knows nothing of prompts or pixels and running knows nothing of files.

What differs by family (its prompt template, pixels, how a batch is encoded, its stop tokens) is one
small `PageFamily` object per config type (`PAGE_FAMILIES`); `LoadedModel` hands every call to it.
`PageOptions` holds the per-run page settings only GOT-OCR2.0 reads (tiles, a box, a colour).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError, PromptError
from ..text.gpt2_tokenizer import OPTTokenizer
from ..text.prompts import (GOT_COLORS, GOT_PRESETS, build_prompt_ids, build_tiny_prompt_ids, got_query,
                            resolve_prompt)
from ..text.qwen_tokenizer import QwenTokenizer
from .config import GotConfig, ModelConfig, VaryConfig, VaryTinyConfig
from .preprocess import got_tiles, linear_imagenet_pixels, load_image_from_pil, preprocess_page, sam_pixels

# GotOcr2Processor's crop_to_patches defaults: at least 1 and at most 12 tiles.
GOT_MIN_TILES, GOT_MAX_TILES = 1, 12


@dataclass(frozen=True)
class PageOptions:
    """How GOT-OCR2.0 reads a page (`--crops`, `--box`, `--color`); the Vary families take the defaults.

    crops: "off" (the page squashed to one tile), "auto" (`crop_to_patches` with the processor's 1..12
    tiles) or a number N (1..N tiles). box: (x1, y1, x2, y2) in the image's pixels. color: red, green, blue.
    """

    crops: str | int = "off"
    box: tuple[float, float, float, float] | None = None
    color: str | None = None

    def __post_init__(self) -> None:
        if not (self.crops in ("off", "auto") or (isinstance(self.crops, int) and self.crops >= 1)):
            raise InputError(f"--crops must be auto, off or a number of tiles >= 1, not {self.crops!r}")
        if self.color is not None and self.color not in GOT_COLORS:
            raise InputError(f"--color must be one of {', '.join(GOT_COLORS)}, not {self.color!r}")
        if self.box is not None:
            if len(self.box) != 4:
                raise InputError(f"--box takes four numbers x1,y1,x2,y2, got {len(self.box)}")
            x1, y1, x2, y2 = self.box
            if min(self.box) < 0 or x2 < x1 or y2 < y1:
                raise InputError(f"--box {x1:g},{y1:g},{x2:g},{y2:g}: needs 0 <= x1 <= x2 and 0 <= y1 <= y2")

    def check_image(self, width: int, height: int) -> None:
        """Raise InputError when the box does not fit a `width` x `height` image."""
        if self.box is not None and (self.box[2] > width or self.box[3] > height):
            x1, y1, x2, y2 = self.box
            raise InputError(f"--box {x1:g},{y1:g},{x2:g},{y2:g} lies outside the {width}x{height} image")

    @property
    def max_tiles(self) -> int | None:
        """None without cropping, else the most tiles a page may be cut into."""
        return None if self.crops == "off" else GOT_MAX_TILES if self.crops == "auto" else int(self.crops)


@dataclass(frozen=True)
class PageInput:
    """One page's preprocessed pixels, ready to be stacked with other pages' into a batch."""

    pixels: tuple[torch.Tensor, ...]


class PageFamily:
    """What a model family does per page. The Vary families share this shape; GOT overrides it."""

    takes_options = False

    def prompt_ids(self, loaded: "LoadedModel", prompt: str) -> list[int]:
        raise NotImplementedError

    def pixels(self, loaded: "LoadedModel", image, prompt: str) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def prepare_page(self, loaded: "LoadedModel", image, prompt: str) -> tuple[PageInput, list[int]]:
        return PageInput(self.pixels(loaded, image, prompt)), self.prompt_ids(loaded, prompt)

    def most_tiles(self, loaded: "LoadedModel") -> int:
        """The most images (tiles) one page may send through the vision encoder."""
        return 1

    def encode(self, loaded: "LoadedModel", inputs: list[PageInput]) -> torch.Tensor:
        """Image features (B, N, W) of pages whose pixels are one tensor per vision tower."""
        towers = zip(*(page.pixels for page in inputs))
        stacked = [torch.stack(pixels).to(loaded.device, loaded.dtype) for pixels in towers]  # (B, 3, H, W) each
        return loaded.model.encode_images(*stacked)

    def stop_ids(self, tokenizer) -> set[int]:
        return {tokenizer.im_end_id, tokenizer.endoftext_id}

    def pad_id(self, tokenizer) -> int:
        return tokenizer.endoftext_id


class VaryQwenPages(PageFamily):
    """Vary-toy / Vary-base: the mpt template, CLIP and SAM pixels."""

    def prompt_ids(self, loaded, prompt):
        config = loaded.config
        return build_prompt_ids(loaded.tokenizer, resolve_prompt(prompt, config.prompt_style),
                                style=config.prompt_style, image_token_len=config.image_token_len)

    def pixels(self, loaded, image, prompt):
        page = preprocess_page(image, loaded.config)
        return page.clip, page.sam  # (3, 224, 224), (3, 1024, 1024)


class VaryTinyPages(PageFamily):
    """Vary-tiny: the vicuna template or, for an empty prompt, the image tokens alone (each with its own
    preprocessing: the vocabulary stage trained on differently prepared pages)."""

    def prompt_ids(self, loaded, prompt):
        config = loaded.config
        return build_tiny_prompt_ids(loaded.tokenizer, resolve_prompt(prompt, config.prompt_style),
                                     config.image_token_len)

    def pixels(self, loaded, image, prompt):
        image_only = resolve_prompt(prompt, loaded.config.prompt_style) == ""
        to_pixels = linear_imagenet_pixels if image_only else sam_pixels
        return (to_pixels(image, loaded.config.sam),)  # (3, 1024, 1024)

    def stop_ids(self, tokenizer):
        return {tokenizer.eos_id}  # </s>

    def pad_id(self, tokenizer):
        return tokenizer.pad_id


class GotPages(PageFamily):
    """GOT-OCR2.0, as `GotOcr2Processor` prepares a page: its tiles (one, or a grid and the global view)
    go in as one request, and the prompt's `<imgpad>` run is 256 x tiles long."""

    takes_options = True

    def prompt_ids(self, loaded, prompt, tiles: int = 1, box: list[int] | None = None):
        if prompt not in GOT_PRESETS:
            raise PromptError(f"GOT-OCR2 takes --prompt ocr (plain text) or markdown / format (formatted "
                              f"text), not {prompt!r}: it follows no other instructions")
        options = loaded.options
        query = got_query(GOT_PRESETS[prompt], box, options.color, options.max_tiles is not None)
        return build_prompt_ids(loaded.tokenizer, query, style="vary-toy",
                                image_token_len=loaded.config.image_token_len * tiles)

    def prepare_page(self, loaded, image, prompt):
        image = load_image_from_pil(image)
        box = got_box(loaded.options, *image.size)
        tiles = got_tiles(image, loaded.config.sam.image_size, loaded.options.max_tiles, GOT_MIN_TILES)
        return PageInput((tiles,)), self.prompt_ids(loaded, prompt, len(tiles), box)

    def pixels(self, loaded, image, prompt):
        return self.prepare_page(loaded, image, prompt)[0].pixels

    def most_tiles(self, loaded):
        most = loaded.options.max_tiles
        return 1 if most is None or most <= 1 else most + 1  # the tiles and the whole page

    def encode(self, loaded, inputs):
        """Features (B, 256 x tiles, W): every page's tiles in order, through the encoder together."""
        counts = [len(page.pixels[0]) for page in inputs]
        if len(set(counts)) > 1:
            raise PromptError(f"pages cut into different numbers of tiles ({sorted(set(counts))}) cannot share "
                              "a batch; batch them by prompt length")
        tiles = torch.cat([page.pixels[0] for page in inputs]).to(loaded.device, loaded.dtype)  # (B*P, 3, S, S)
        # One tile at a time on a CPU, as LoadedModel.encode_inputs sends Vary's pages (SAM's global
        # attention costs memory and batching gains nothing there); all at once elsewhere.
        step = 1 if loaded.device.type == "cpu" else len(tiles)
        features = torch.cat([loaded.model.encode_images(tiles[i:i + step])
                              for i in range(0, len(tiles), step)])  # (B*P, 256, W)
        return features.reshape(len(inputs), -1, features.shape[-1])  # (B, P*256, W)


def got_box(options: PageOptions, width: int, height: int) -> list[int] | None:
    """The box in GOT's 0..1000 coordinates, truncated as `GotOcr2Processor` does (`int(x / width * 1000)`)."""
    if options.box is None:
        return None
    options.check_image(width, height)
    x1, y1, x2, y2 = options.box
    return [int(x1 / width * 1000), int(y1 / height * 1000), int(x2 / width * 1000), int(y2 / height * 1000)]


PAGE_FAMILIES: dict[type, PageFamily] = {VaryConfig: VaryQwenPages(), VaryTinyConfig: VaryTinyPages(),
                                         GotConfig: GotPages()}


@dataclass
class LoadedModel:
    """A model ready for inference, with what is needed to prompt it.

    The pipeline talks to every model family through these methods only: the prompt's ids, the stop
    ids, and the image features of a batch of pages.
    """

    model: Any
    tokenizer: QwenTokenizer | OPTTokenizer
    config: ModelConfig
    directory: Path
    device: torch.device
    dtype: torch.dtype
    options: PageOptions = field(default_factory=PageOptions)

    @property
    def family(self) -> PageFamily:
        return PAGE_FAMILIES[type(self.config)]

    @property
    def is_tiny(self) -> bool:
        return isinstance(self.config, VaryTinyConfig)

    def with_options(self, options: PageOptions) -> "LoadedModel":
        """This model reading pages with `options`; only GOT-OCR2.0 takes any but the defaults."""
        if options != PageOptions() and not self.family.takes_options:
            raise InputError(f"{self.directory.name}: --crops, --box and --color are GOT-OCR2.0 options; "
                             "this is a Vary model")
        return replace(self, options=options)

    def prompt_ids(self, prompt: str) -> list[int]:
        """Token ids of the release's conversation template around `prompt` (a preset name or text), for a
        page of one tile (GOT's prompt grows with its tiles and names its box: see `prepare_page`).

        For Vary-tiny an empty prompt selects the image-only (vocabulary-stage) format.
        """
        return self.family.prompt_ids(self, prompt)

    def longest_prompt(self, prompt: str) -> int:
        """The most prompt tokens a page may get (GOT's grow with its tiles), for sizing batches."""
        return len(self.prompt_ids(prompt)) + (self.most_tiles - 1) * self.config.image_token_len

    @property
    def most_tiles(self) -> int:
        """The most images one page may send through the vision encoder (GOT's tiles; else 1)."""
        return self.family.most_tiles(self)

    @property
    def stop_ids(self) -> set[int]:
        return self.family.stop_ids(self.tokenizer)

    @property
    def pad_id(self) -> int:
        return self.family.pad_id(self.tokenizer)

    def prepare_page(self, image, prompt: str = "ocr") -> tuple[PageInput, list[int]]:
        """A page as the engine takes it: its preprocessed pixels and the prompt's token ids.

        This is the one hook a model family gives the engine per page (CPU work, done before the page
        joins a batch); a family whose prompt depends on the image (GOT's crops) answers per page.
        """
        return self.family.prepare_page(self, image, prompt)

    def encode_inputs(self, inputs: list[PageInput], vision_batch: int | None = None) -> torch.Tensor:
        """Image features (B, N, W) of prepared pages, on the model's device and dtype.

        `vision_batch` pages go through the vision towers at a time; by default all of them on a GPU
        and one on a CPU, where batching gains nothing and SAM's global attention (12 x 4096² floats per
        page per layer) only costs memory: bench/bench_infer.py measured 10.2 s/page one at a time
        against 17.1 s/page and 20 GiB of RSS eight at a time.
        """
        vision_batch = vision_batch or (1 if self.device.type == "cpu" else len(inputs))
        with torch.inference_mode():
            return torch.cat([self.family.encode(self, inputs[i:i + vision_batch])
                              for i in range(0, len(inputs), vision_batch)])

    def encode_pages(self, images: list, prompt: str = "ocr", vision_batch: int | None = None) -> torch.Tensor:
        """Image features (B, N, W) of RGB PIL pages (`prepare_page` then `encode_inputs`).

        `prompt` matters to Vary-tiny only, whose two prompt formats were trained on differently
        preprocessed pages: "" (image tokens alone) takes the vocabulary stage's preprocessing.
        """
        return self.encode_inputs([self.prepare_page(image, prompt)[0] for image in images], vision_batch)

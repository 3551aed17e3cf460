"""Page image -> the two pixel tensors Vary's vision towers read (vary.md §2).

`load_image` opens an image file as an RGB PIL image (every failure an `InputError` naming the file);
`preprocess_page` turns an RGB page into a `PagePixels`: the CLIP branch's 224² centre crop and the SAM
branch's 1024² squash, both float32 on the CPU. `stream.convert_many` (via `raster.py`'s pages)
and `train/dataset.py` call these; they hold no model, choose no device and cast nothing.

Parity notes. The CLIP branch repeats the slow, PIL/numpy `CLIPImageProcessor` of transformers 4.x that
the original code ran (transformers 5 keeps the same arithmetic as `CLIPImageProcessorPil`): PIL bicubic
resize of the shortest side, centre crop on uint8, rescale in float64 then cast to float32, normalize in
float32. The SAM branch repeats torchvision's `Resize((S, S), BICUBIC)` + `ToTensor()` + `Normalize`,
which on a PIL image is PIL's own bicubic resize and float32 arithmetic; torchvision is not needed.

Vary-base's SAM branch uses `test_transform` too (see `preprocess_page`).
GOT-OCR2.0 (`got_tiles`) follows transformers' `GotOcr2ImageProcessor` as it runs without torchvision
(its PIL backend): PIL bicubic squash to 1024², or with `crop_to_patches` a grid of 1024² tiles and the
squashed page; then the CLIP branch's rescale and normalization.
Vary-tiny (vary.md §11) reads only the SAM branch: its chat format uses the same 1024² bicubic squash
(`sam_pixels`), its image-only (vocabulary-stage) format the original's `test_transform`: albumentations
`Resize(1024, 1024)` (OpenCV `INTER_LINEAR` on the uint8 array) and ImageNet `Normalize`, repeated by
`linear_imagenet_pixels` in numpy with OpenCV's fixed-point arithmetic, so OpenCV is not needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .config import ClipVisionSpec, SamVisionSpec, VaryConfig
from ..errors import InputError, one_line

# OpenAI CLIP's constants; Vary's SAM branch (BlipImageEvalProcessor) normalizes with the same ones.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# timm's IMAGENET_DEFAULT_MEAN / _STD, which Vary-tiny's test_transform normalizes with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_MEAN32 = np.array(CLIP_MEAN, dtype=np.float32)
_STD32 = np.array(CLIP_STD, dtype=np.float32)

# Modes whose samples do not fit in 8 bits; PIL's own convert("RGB") clips them instead of scaling.
_HIGH_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


@dataclass(frozen=True)
class PagePixels:
    """The two inputs of one page: `clip` (3, 224, 224) and `sam` (3, 1024, 1024), float32, CPU."""

    clip: torch.Tensor
    sam: torch.Tensor


def load_image(path: Path | str) -> Image.Image:
    """Open an image file and return it as a fully loaded RGB image (the first frame of a multi-frame file).

    Raises:
        InputError: the file is missing, a directory, unreadable, not an image, or truncated/corrupt.
    """
    path = Path(path)
    try:
        if path.is_dir():
            raise InputError(f"{path}: is a directory, not an image file")
        if not path.exists():
            raise InputError(f"{path}: no such file")
        with Image.open(path) as image:
            # Decode now, so a truncated file fails here and not halfway through a batch.
            image.load()
            return load_image_from_pil(image, name=str(path))
    except PermissionError:
        raise InputError(f"{path}: permission denied; cannot read the file") from None
    except UnidentifiedImageError:
        if _looks_like_pdf(path):
            raise InputError(f"{path}: is a PDF, not an image; PDFs go through `vary convert`") from None
        raise InputError(f"{path}: not an image file that Pillow can read (PNG, JPEG, TIFF, ...)") from None
    except Image.DecompressionBombError as exc:
        raise InputError(f"{path}: image too large to open safely ({one_line(exc)})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow reports broken data as any of these, depending on the codec.
        raise InputError(f"{path}: truncated or corrupt image ({one_line(exc)})") from None


def load_image_from_pil(image: Image.Image, name: str = "image") -> Image.Image:
    """Return `image` as RGB with the same mode handling as `load_image` (for pages from a PDF rasterizer).

    Transparency is composited onto white, 16/32-bit and float samples are scaled to 8 bits.
    `name` only labels the error for a mode that cannot be converted.
    """
    if image.mode == "RGB":
        return image
    if image.mode in _HIGH_BIT_MODES:
        return Image.fromarray(_to_uint8(np.asarray(image))).convert("RGB")
    try:
        if any(band in ("A", "a") for band in image.getbands()) or "transparency" in image.info:
            # Documents are shown on white, so a transparent pixel is paper, not black. The original
            # code only called .convert("RGB"), which gives the same result for opaque images.
            rgba = image.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(white, rgba).convert("RGB")
        return image.convert("RGB")  # L, 1, P, CMYK, YCbCr, ...
    except ValueError as exc:
        raise InputError(f"{name}: image mode {image.mode!r} cannot be converted to RGB ({one_line(exc)})") from None


def clip_pixels(image: Image.Image, spec: ClipVisionSpec) -> torch.Tensor:
    """CLIP branch: shortest side to `spec.image_size` (PIL bicubic), centre crop, rescale, normalize.

    Returns a float32 tensor (3, spec.image_size, spec.image_size).
    """
    image = load_image_from_pil(image)
    size = spec.image_size
    width, height = image.size
    # transformers' get_resize_output_image_size(default_to_square=False): the long side truncates.
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(size * long / short)
    new_size = (size, new_long) if width <= height else (new_long, size)  # PIL order: (w, h)
    pixels = np.asarray(image.resize(new_size, Image.BICUBIC))  # (H, W, 3) uint8
    pixels = _center_crop(pixels, size)  # (size, size, 3) uint8
    return _rescale_normalize(pixels)  # (3, size, size)


def _rescale_normalize(pixels: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> float32 (3, H, W) as transformers' numpy image processors do it: rescale in
    float64 (uint8 * 1/255), cast to float32, then normalize with the CLIP constants in float32."""
    scaled = (pixels.astype(np.float64) * (1 / 255)).astype(np.float32)
    normalized = (scaled - _MEAN32) / _STD32  # (H, W, 3) float32
    return torch.from_numpy(np.ascontiguousarray(normalized.transpose(2, 0, 1)))  # (3, H, W)


def tile_grid(width: int, height: int, tile: int, min_tiles: int, max_tiles: int) -> tuple[int, int]:
    """(columns, rows) of tiles whose aspect ratio is closest to the page's (transformers'
    `get_optimal_tiled_canvas`): on a tie the grid with more tiles wins while the page's area exceeds half
    of theirs, so a small page is not cut into many tiles."""
    grids = sorted(((w, h) for w in range(1, max_tiles + 1) for h in range(1, max_tiles + 1)
                    if min_tiles <= w * h <= max_tiles), key=lambda grid: grid[0] * grid[1])
    aspect, area = width / height, width * height
    best, best_diff = (1, 1), float("inf")
    for grid in grids:
        diff = abs(aspect - grid[0] / grid[1])
        if diff < best_diff:
            best, best_diff = grid, diff
        elif diff == best_diff and area > 0.5 * tile * tile * grid[0] * grid[1]:
            best = grid
    return best


def got_tiles(image: Image.Image, size: int, max_tiles: int | None, min_tiles: int = 1) -> torch.Tensor:
    """GOT-OCR2.0's pixels of a page as `GotOcr2ImageProcessor` (PIL backend) makes them: float32
    (tiles, 3, size, size).

    `max_tiles` None: the page squashed to size² (PIL bicubic). Otherwise (`crop_to_patches`) the page is
    resized to the grid `tile_grid` picks and cut into size² tiles, row by row, followed by the whole page
    squashed to size² (the global view) when there is more than one tile; `max_tiles` 1 gives the squash.
    """
    image = load_image_from_pil(image)
    width, height = image.size
    square = np.asarray(image.resize((size, size), Image.BICUBIC))  # (S, S, 3) uint8
    if max_tiles is None or max_tiles <= 1:
        return _rescale_normalize(square)[None]  # (1, 3, S, S)
    columns, rows = tile_grid(width, height, size, min_tiles, max_tiles)
    canvas = np.asarray(image.resize((columns * size, rows * size), Image.BICUBIC))  # (rows*S, columns*S, 3)
    tiles = [canvas[r * size:(r + 1) * size, c * size:(c + 1) * size] for r in range(rows) for c in range(columns)]
    if len(tiles) > 1:
        tiles.append(square)
    return torch.stack([_rescale_normalize(np.ascontiguousarray(t)) for t in tiles])  # (tiles, 3, S, S)


def sam_pixels(image: Image.Image, spec: SamVisionSpec) -> torch.Tensor:
    """SAM branch: squash to `spec.image_size`² (PIL bicubic, aspect not kept), /255, normalize.

    Returns a float32 tensor (3, spec.image_size, spec.image_size).
    """
    image = load_image_from_pil(image)
    size = spec.image_size
    pixels = np.asarray(image.resize((size, size), Image.BICUBIC))  # (S, S, 3) uint8
    # ToTensor: CHW, float32, divided (not multiplied by 1/255) by 255; Normalize: sub then div in float32.
    tensor = torch.from_numpy(pixels.copy()).permute(2, 0, 1).contiguous().to(torch.float32).div(255)  # (3, S, S)
    mean = torch.tensor(CLIP_MEAN, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=torch.float32).view(3, 1, 1)
    return tensor.sub(mean).div(std)  # (3, S, S)


def preprocess_page(image: Image.Image, config: VaryConfig) -> PagePixels:
    """Both vision inputs of one page, sized by `config.clip` and `config.sam`.

    The SAM branch follows each release's own demo: Vary-toy's `BlipImageEvalProcessor` (PIL bicubic,
    CLIP normalization), Vary-base's `test_transform` (OpenCV bilinear, ImageNet normalization; the
    Vary repo's run_qwen_vary.py, where vary.md §2 says Blip: the code wins).
    """
    image = load_image_from_pil(image)
    sam_transform = linear_imagenet_pixels if config.prompt_style == "vary-base" else sam_pixels
    return PagePixels(clip=clip_pixels(image, config.clip), sam=sam_transform(image, config.sam))


def linear_imagenet_pixels(image: Image.Image, spec: SamVisionSpec) -> torch.Tensor:
    """Vary-tiny's image-only format: OpenCV bilinear resize to `spec.image_size`², ImageNet normalize.

    Returns a float32 tensor (3, spec.image_size, spec.image_size).
    """
    pixels = np.asarray(load_image_from_pil(image))  # (H, W, 3) uint8
    resized = resize_linear_like_opencv(pixels, spec.image_size, spec.image_size)  # (S, S, 3) uint8
    # albumentations 1.3's normalize: float32 mean*255 subtracted, then times the float32 reciprocal of std*255.
    mean = np.array(IMAGENET_MEAN, dtype=np.float32) * np.float32(255.0)
    std = np.array(IMAGENET_STD, dtype=np.float32) * np.float32(255.0)
    normalized = (resized.astype(np.float32) - mean) * np.reciprocal(std, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(normalized.transpose(2, 0, 1)))  # (3, S, S)


def resize_linear_like_opencv(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """`cv2.resize(pixels, (width, height), interpolation=INTER_LINEAR)` for a uint8 (H, W, C) array.

    OpenCV samples two neighbours per axis at half-pixel centres (no antialiasing) with 11-bit weights:
    the horizontal pass keeps exact integers, the vertical pass rounds as its SIMD kernel does.
    """
    src_h, src_w = pixels.shape[:2]
    x0, x1, a0, a1 = _linear_taps(src_w, width, clamp_weights=True)
    y0, y1, b0, b1 = _linear_taps(src_h, height, clamp_weights=False)
    wide = pixels.astype(np.int32)
    rows = (wide[:, x0] * a0[None, :, None] + wide[:, x1] * a1[None, :, None]) >> 4  # (H, width, C)
    top = (rows[y0] * b0[:, None, None]) >> 16  # (height, width, C)
    bottom = (rows[y1] * b1[:, None, None]) >> 16
    return np.clip((top + bottom + 2) >> 2, 0, 255).astype(np.uint8)


def _linear_taps(src: int, dst: int, clamp_weights: bool) -> tuple[np.ndarray, ...]:
    # OpenCV: f = (float)((d + 0.5) * scale - 0.5), s = floor(f), f -= s; weights
    # saturate_cast<short>((1 - f) * 2048) and (f * 2048), rounded half to even. Along x a tap outside the
    # image moves to the border with weight (2048, 0); along y the weights stay and both taps are clipped
    # to the border row.
    scale = 1.0 / (dst / src)
    f = ((np.arange(dst, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    s = np.floor(f).astype(np.int64)
    f = f - s.astype(np.float32)
    if clamp_weights:
        f[(s < 0) | (s >= src - 1)] = 0
        s = np.clip(s, 0, src - 1)
    w0 = np.rint((np.float32(1) - f) * np.float32(2048)).astype(np.int32)
    w1 = np.rint(f * np.float32(2048)).astype(np.int32)
    return np.clip(s, 0, src - 1), np.clip(s + 1, 0, src - 1), w0, w1


def _center_crop(pixels: np.ndarray, size: int) -> np.ndarray:
    # transformers' center_crop: offset (n - size) // 2 on an axis that is long enough; on a short axis the
    # image is zero-padded, placed at ceil((size - n) / 2). Shortest-side resizing never leaves a short
    # axis, but the rule is kept so a caller's odd input still matches the reference.
    out = np.zeros((size, size, pixels.shape[2]), dtype=pixels.dtype)
    (src_y, dst_y, len_y), (src_x, dst_x, len_x) = (_crop_axis(n, size) for n in pixels.shape[:2])
    out[dst_y:dst_y + len_y, dst_x:dst_x + len_x] = pixels[src_y:src_y + len_y, src_x:src_x + len_x]
    return out


def _crop_axis(n: int, size: int) -> tuple[int, int, int]:
    if n >= size:
        return (n - size) // 2, 0, size
    return 0, (size - n + 1) // 2, n


def _to_uint8(samples: np.ndarray) -> np.ndarray:
    # 16-bit data (I;16*, or I whose values fit 0..65535, as older Pillow opens 16-bit PNGs): divide by
    # 257 and round, the exact inverse of the usual 8->16-bit expansion v * 257, so 65535 -> 255.
    # Floats in [0, 1] scale by 255; anything else (negative or > 16-bit ints, other floats) is
    # stretched over its own range. PIL's convert would clip all of these to 255 instead.
    if np.issubdtype(samples.dtype, np.integer):
        wide = samples.astype(np.int64)
        lo, hi = int(wide.min()), int(wide.max())
        if lo >= 0 and hi <= 65535:
            return ((wide + 128) // 257).astype(np.uint8)
        floats = wide.astype(np.float64)
    else:
        floats = np.nan_to_num(samples.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = float(floats.min()), float(floats.max())
        if lo >= 0.0 and hi <= 1.0:
            return np.rint(floats * 255).astype(np.uint8)
    span = (hi - lo) or 1.0  # a constant image maps to black rather than dividing by zero
    return np.rint((floats - lo) * (255 / span)).astype(np.uint8)


def _looks_like_pdf(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(5) == b"%PDF-" or path.suffix.lower() == ".pdf"
    except OSError:
        return path.suffix.lower() == ".pdf"

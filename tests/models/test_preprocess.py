"""preprocess.py: tensor sizes, parity with transformers' PIL CLIP processor, SAM squash, image modes, errors."""

import os

import numpy as np
import pytest
import torch
from PIL import Image

from vary_cli.models.config import ClipVisionSpec, SamVisionSpec, VaryConfig
from vary_cli.errors import InputError
from vary_cli.models.preprocess import (
                                        CLIP_MEAN,
                                        CLIP_STD,
                                        PagePixels,
                                        clip_pixels,
                                        load_image,
                                        load_image_from_pil,
                                        preprocess_page,
                                        sam_pixels,
                                        )

CLIP = ClipVisionSpec(image_size=28, patch_size=7)  # 16 patches
SAM = SamVisionSpec(image_size=64, patch_size=4)  # 16 tokens after the two stride-2 convs
MEAN = np.array(CLIP_MEAN)
STD = np.array(CLIP_STD)


def random_image(width, height, seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def normalized(rgb):
    """The expected (3,) value of an 8-bit RGB colour after rescale + normalize."""
    return (np.array(rgb) / 255 - MEAN) / STD


def clip_reference(size):
    """transformers' PIL/numpy CLIP processor, every openai/clip-vit-large-patch14 setting spelled out."""
    module = pytest.importorskip("transformers.models.clip.image_processing_pil_clip")
    return module.CLIPImageProcessorPil(
        do_resize=True, size={"shortest_edge": size}, resample=Image.BICUBIC,
        do_center_crop=True, crop_size={"height": size, "width": size},
        do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
        image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD), do_convert_rgb=True,
    )


SIZES = {"tall": (20, 90), "wide": (90, 20), "tiny": (9, 5), "square": (40, 40), "odd": (101, 37)}


@pytest.mark.parametrize("name", SIZES)
def test_shapes_and_dtype(name):
    image = random_image(*SIZES[name])
    clip, sam = clip_pixels(image, CLIP), sam_pixels(image, SAM)
    assert clip.shape == (3, 28, 28) and clip.dtype == torch.float32 and clip.device.type == "cpu"
    assert sam.shape == (3, 64, 64) and sam.dtype == torch.float32 and sam.is_contiguous()


@pytest.mark.parametrize("name", SIZES)
def test_clip_matches_transformers_pil_processor(name):
    image = random_image(*SIZES[name], seed=1)
    expected = clip_reference(28)(image, return_tensors="np")["pixel_values"][0]
    np.testing.assert_allclose(clip_pixels(image, CLIP).numpy(), expected, rtol=0, atol=1e-6)


def test_clip_crop_keeps_the_centre_of_a_tall_page():
    # Thirds: red on top, green in the middle, blue at the bottom; 56 wide -> resized to 28 x 84.
    bands = np.zeros((168, 56, 3), dtype=np.uint8)
    bands[:56, :, 0] = bands[56:112, :, 1] = bands[112:, :, 2] = 255
    clip = clip_pixels(Image.fromarray(bands), CLIP).numpy()
    # Rows near the crop edge may blend a little of the neighbours (bicubic support); the rest is pure green.
    inner = clip[:, 3:25, :].reshape(3, -1)
    np.testing.assert_allclose(inner, np.repeat(normalized((0, 255, 0))[:, None], inner.shape[1], 1), atol=1e-5)


def test_sam_squashes_and_matches_an_independent_computation():
    # A 4:1 page, red left half, blue right half. Squashed, both halves span every row: no padding.
    half = np.zeros((20, 80, 3), dtype=np.uint8)
    half[:, :40, 0] = half[:, 40:, 2] = 255
    image = Image.fromarray(half)
    sam = sam_pixels(image, SAM).numpy()
    np.testing.assert_allclose(sam[:, :, :28], normalized((255, 0, 0))[:, None, None].repeat(64, 1).repeat(28, 2),
                               atol=1e-5)
    np.testing.assert_allclose(sam[:, :, 36:], normalized((0, 0, 255))[:, None, None].repeat(64, 1).repeat(28, 2),
                               atol=1e-5)
    for img in (image, random_image(50, 130, seed=2)):
        expected = (np.asarray(img.resize((64, 64), Image.BICUBIC)) / 255 - MEAN) / STD
        np.testing.assert_allclose(sam_pixels(img, SAM).numpy(), expected.transpose(2, 0, 1), rtol=0, atol=1e-6)


def test_normalization_constants():
    assert CLIP_MEAN == (0.48145466, 0.4578275, 0.40821073)
    assert CLIP_STD == (0.26862954, 0.26130258, 0.27577711)
    for rgb in ((255, 255, 255), (0, 0, 0)):
        image = Image.new("RGB", (30, 50), rgb)
        for pixels in (clip_pixels(image, CLIP), sam_pixels(image, SAM)):
            expected = torch.tensor(normalized(rgb), dtype=torch.float32)[:, None, None].expand_as(pixels)
            torch.testing.assert_close(pixels, expected, rtol=0, atol=1e-6)


def test_preprocess_page():
    config = VaryConfig(clip=CLIP, sam=SAM, image_token_len=16)
    page = preprocess_page(Image.new("RGBA", (30, 70), (0, 0, 0, 0)), config)
    assert isinstance(page, PagePixels)
    assert page.clip.shape == (3, 28, 28) and page.sam.shape == (3, 64, 64)
    # A fully transparent page is white paper.
    torch.testing.assert_close(page.sam[:, 0, 0], torch.tensor(normalized((255, 255, 255)), dtype=torch.float32))


def test_real_sizes():
    image = random_image(850, 1100, seed=3)  # a letter page at 100 dpi
    page = preprocess_page(image, VaryConfig())
    assert page.clip.shape == (3, 224, 224) and page.sam.shape == (3, 1024, 1024)
    expected = clip_reference(224)(image, return_tensors="np")["pixel_values"][0]
    np.testing.assert_allclose(page.clip.numpy(), expected, rtol=0, atol=1e-6)


def _mode_cases():
    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    clear_palette = palette.copy()
    clear_palette.info["transparency"] = 1
    half_rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 128))
    return {
        "RGB": (Image.new("RGB", (4, 4), (1, 2, 3)), (1, 2, 3)),
        "L": (Image.new("L", (4, 4), 200), (200, 200, 200)),
        "1": (Image.new("1", (4, 4), 1), (255, 255, 255)),
        "P": (palette, (10, 20, 30)),
        "P+transparency": (clear_palette, (255, 255, 255)),
        "CMYK": (Image.new("CMYK", (4, 4), (0, 0, 0, 0)), (255, 255, 255)),
        "YCbCr": (Image.new("YCbCr", (4, 4), (255, 128, 128)), (255, 255, 255)),
        "LA opaque": (Image.new("LA", (4, 4), (100, 255)), (100, 100, 100)),
        "LA clear": (Image.new("LA", (4, 4), (0, 0)), (255, 255, 255)),
        "RGBA clear": (Image.new("RGBA", (4, 4), (0, 0, 0, 0)), (255, 255, 255)),
        "RGBA half": (half_rgba, (127, 127, 127)),
        "I;16 max": (Image.new("I;16", (4, 4), 65535), (255, 255, 255)),
        "I;16 mid": (Image.new("I;16", (4, 4), 128 * 257), (128, 128, 128)),
        "I;16B mid": (Image.new("I;16B", (4, 4), 128 * 257), (128, 128, 128)),
        "I 16-bit": (Image.new("I", (4, 4), 65535), (255, 255, 255)),
        "F unit": (Image.new("F", (4, 4), 0.5), (128, 128, 128)),
    }


@pytest.mark.parametrize("case", list(_mode_cases()))
def test_modes_become_rgb(case):
    image, rgb = _mode_cases()[case]
    out = load_image_from_pil(image)
    assert out.mode == "RGB" and out.size == image.size
    assert np.abs(np.asarray(out).astype(int) - rgb).max() <= 1, np.asarray(out)[0, 0]


def test_high_bit_ranges_are_scaled_not_clipped():
    ramp16 = Image.fromarray(np.array([[0, 257, 32896, 65535]], dtype=np.uint16))
    assert ramp16.convert("RGB").getpixel((2, 0)) == (255, 255, 255)  # what PIL's clipping convert gives
    assert np.asarray(load_image_from_pil(ramp16))[0, :, 0].tolist() == [0, 1, 128, 255]
    wide_int = Image.fromarray(np.array([[-1000, 0, 1000]], dtype=np.int32))
    assert np.asarray(load_image_from_pil(wide_int))[0, :, 0].tolist() == [0, 128, 255]
    wide_float = Image.fromarray(np.array([[0.0, 500.0, 1000.0]], dtype=np.float32))
    assert np.asarray(load_image_from_pil(wide_float))[0, :, 0].tolist() == [0, 128, 255]


@pytest.mark.parametrize("mode,fmt", [("L", "png"), ("P", "png"), ("1", "png"), ("LA", "png"), ("RGBA", "png"),
                                      ("I;16", "png"), ("CMYK", "tiff"), ("I", "tiff"), ("F", "tiff"),
                                      ("RGB", "jpeg")])
def test_files_in_each_mode_load_as_rgb(tmp_path, mode, fmt):
    white = {"P": 0, "LA": (255, 255), "RGBA": (255, 255, 255, 255), "CMYK": (0, 0, 0, 0), "I;16": 65535,
             "I": 65535, "F": 1.0, "RGB": (255, 255, 255), "L": 255, "1": 1}[mode]
    image = Image.new(mode, (8, 6), white)
    if mode == "P":
        image.putpalette([255, 255, 255] * 256)
    path = tmp_path / f"page.{fmt}"
    image.save(path)
    out = load_image(path)
    assert out.mode == "RGB" and out.size == (8, 6)
    assert np.asarray(out).min() >= 250


def test_multi_frame_tiff_gives_the_first_frame(tmp_path):
    path = tmp_path / "pages.tiff"
    frames = [Image.new("RGB", (5, 5), c) for c in ((10, 0, 0), (0, 20, 0), (0, 0, 30))]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    assert load_image(path).getpixel((2, 2)) == (10, 0, 0)


def _truncated_png(tmp_path):
    path = tmp_path / "cut.png"
    random_image(64, 64).save(path)
    path.write_bytes(path.read_bytes()[:300])
    return path


@pytest.mark.parametrize("kind", ["missing", "directory", "text", "pdf", "truncated"])
def test_bad_inputs_raise_one_line_input_errors(tmp_path, kind):
    path = {
        "missing": lambda: tmp_path / "nothere.png",
        "directory": lambda: (tmp_path / "folder.png").mkdir() or tmp_path / "folder.png",
        "text": lambda: (tmp_path / "notes.txt").write_text("hello\nworld\n") and tmp_path / "notes.txt",
        "pdf": lambda: (tmp_path / "scan.pdf").write_bytes(b"%PDF-1.4\n%\xe2\xe3\n1 0 obj\n<<>>\nendobj\n")
        and tmp_path / "scan.pdf",
        "truncated": lambda: _truncated_png(tmp_path),
    }[kind]()
    with pytest.raises(InputError) as info:
        load_image(str(path))
    message = str(info.value)
    assert path.name in message and "\n" not in message
    if kind == "pdf":
        assert "vary convert" in message


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_raises_input_error(tmp_path):
    path = tmp_path / "locked.png"
    random_image(4, 4).save(path)
    path.chmod(0)
    try:
        with pytest.raises(InputError, match="locked.png.*permission"):
            load_image(path)
    finally:
        path.chmod(0o644)


def test_permission_error_from_open_becomes_input_error(tmp_path, monkeypatch):
    # Runs as root too, where chmod cannot make a file unreadable.
    path = tmp_path / "secret.png"
    random_image(4, 4).save(path)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(Image, "open", refuse)
    with pytest.raises(InputError, match="secret.png.*permission"):
        load_image(path)

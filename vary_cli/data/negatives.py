"""`vary data negatives`: natural images with one of Vary's five fixed answers (Vary §3.2.2).

Vary's vocabulary stage shows the new vision vocabulary natural images whose answer is one of five
sentences saying it is a nature picture, so that the vocabulary, trained for dense text, does not
take over what CLIP already sees. The human turn is the image alone, as in the vocabulary stage's
image-only format. Images are referenced in place (relative to data.jsonl), not copied; each is
opened once to check it decodes, and one that does not is skipped with its reason.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from ..errors import InputError
from .writer import Item, Outcome, conversation, relative_image

NATURE_ANSWERS = ("It's an image of nature", "Here's a nature picture", "It's a nature photo",
                  "This is a natural image", "That's a shot from nature")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})


def find_images(directory: Path) -> list[Item]:
    """Every image under `directory` (recursively, sorted, hidden files skipped), keyed by its path in it.

    Raises:
        InputError: `directory` is not a directory or holds no image.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"{directory}: not a directory of images")
    found = []
    for folder, dirnames, filenames in os.walk(directory):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(folder) / n for n in filenames
                  if not n.startswith(".") and Path(n).suffix.lower() in IMAGE_SUFFIXES]
    if not found:
        raise InputError(f"{directory}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    found.sort(key=lambda p: p.relative_to(directory).parts)
    return [Item(path.relative_to(directory).as_posix(), index, str(path)) for index, path in enumerate(found)]


def check_image(path: str) -> str | None:
    """None when the image decodes, else why not (a skip reason)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
    except Image.DecompressionBombError:
        # Pillow refuses images past 2 x MAX_IMAGE_PIXELS (a decompression bomb): skip it as too large.
        return "image too large (decompression bomb)"
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, EOFError) as exc:
        # Pillow reports broken data as any of these, depending on the codec (as models/preprocess.py reads it).
        return "unreadable image" if isinstance(exc, UnidentifiedImageError) else f"unreadable image ({type(exc).__name__})"
    return None


def make_negative(out: str, item: Item, seed: int) -> Outcome:
    """One natural image with a fixed answer picked by the item's seed."""
    problem = check_image(item.payload)
    if problem:
        return Outcome(item.key, item.index, skipped=problem)
    answer = random.Random(seed).choice(NATURE_ANSWERS)
    record = conversation(relative_image(Path(item.payload), Path(out)), "", answer, item.key)
    return Outcome(item.key, item.index, records=[record])

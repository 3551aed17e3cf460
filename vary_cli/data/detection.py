"""`vary data detection`: COCO-format boxes as Vary-toy's detection samples (Vary-toy §3.1.1, §3.2.2).

Followed from the Vary-toy paper (its repository has no data code): boxes are normalised to the
image and multiplied by 1000 (§3.2.2), written as in its Figure 3 answers:

    Person: [535, 544, 568, 591]; Car: [009, 552, 058, 737], [682, 598, 999, 976]; Bus: [044, 070, 913, 909].

i.e. `[x0, y0, x1, y1]` as three-digit numbers (1000 stays 1000), a class's boxes joined by ", ",
classes by "; " in the order they first appear in the annotations, a final ".". An image with at most
`max_boxes` (30) boxes asks "Detect all objects in this image." (Table 1). With more, it becomes a
referring task (§3.1.1): classes are taken in a random order (the item's seed) while their boxes
still fit in 30, and the question names them: "Detect Tuba, Gloves and Bow Tie in this image."; with
`refer_samples` > 1 such an image gives that many samples with different classes ("one image can be
used multiple times").
Crowd regions (`iscrowd`) are left out. Class names are the data set's, with the first letter upper
case, as the paper's "Person", "Car". Images are referenced in place, not copied.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from .negatives import check_image
from .writer import Item, Outcome, conversation, relative_image

DETECT_ALL = "Detect all objects in this image."


@dataclass(frozen=True)
class DetectionSettings:
    """How COCO annotations become samples; every field but `out` is in the manifest."""

    out: str
    max_boxes: int = 30
    refer_samples: int = 1  # samples per crowded image, each naming another random set of classes

    def __post_init__(self) -> None:
        if self.max_boxes < 1:
            raise InputError("--max-boxes must be at least 1")
        if self.refer_samples < 1:
            raise InputError("--refer-samples must be at least 1")

    def manifest(self) -> dict:
        return {"max_boxes": self.max_boxes, "refer_samples": self.refer_samples, "question": DETECT_ALL}


def read_coco(annotations: Path, images: Path) -> list[Item]:
    """One Item per image of a COCO json, keyed by its file_name, with its classes and pixel boxes.

    Raises:
        InputError: the file is missing, not JSON, or lacks COCO's images/annotations/categories.
    """
    try:
        coco = json.loads(Path(annotations).read_text(encoding="utf-8"))
        names = {c["id"]: _class_name(c["name"]) for c in coco["categories"]}
        entries = sorted(coco["images"], key=lambda image: str(image["file_name"]))
        boxes: dict = {image["id"]: [] for image in entries}
        for ann in coco["annotations"]:
            if not ann.get("iscrowd") and ann["image_id"] in boxes:
                boxes[ann["image_id"]].append((names[ann["category_id"]], [float(v) for v in ann["bbox"]]))
    except FileNotFoundError:
        raise InputError(f"{annotations}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{annotations}: cannot read the COCO json ({exc})") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{annotations}: not COCO detection json (images, annotations, categories with "
                         f"id/name/bbox; problem at {exc})") from None
    return [Item(str(image["file_name"]), index,
                 (str(Path(images) / image["file_name"]), image.get("width"), image.get("height"),
                  tuple((name, tuple(box)) for name, box in boxes[image["id"]])))
            for index, image in enumerate(entries)]


def _class_name(name: str) -> str:
    name = str(name).strip()
    return name[:1].upper() + name[1:]


def normalise(box: tuple[float, float, float, float], width: float, height: float) -> tuple[int, int, int, int]:
    """COCO's pixel [x, y, w, h] as [x0, y0, x1, y1] in thousandths of the image, clamped to 0..1000."""
    x, y, w, h = box
    scaled = (x / width, y / height, (x + w) / width, (y + h) / height)
    return tuple(min(1000, max(0, round(v * 1000))) for v in scaled)  # type: ignore[return-value]


def answer(objects: list[tuple[str, tuple[int, int, int, int]]]) -> str:
    """`Class: [x0, y0, x1, y1], [...]; Class: [...].` with classes in first-seen order."""
    by_class: dict[str, list[str]] = {}
    for name, box in objects:
        by_class.setdefault(name, []).append("[" + ", ".join(f"{v:03d}" for v in box) + "]")
    return "; ".join(f"{name}: {', '.join(boxes)}" for name, boxes in by_class.items()) + "."


def question_and_objects(objects: list[tuple[str, tuple]], max_boxes: int, rng: random.Random):
    """(question, objects to answer) by the 30-box rule, or (None, reason) when no class fits."""
    if len(objects) <= max_boxes:
        return DETECT_ALL, objects
    counts: dict[str, int] = {}
    for name, _ in objects:
        counts[name] = counts.get(name, 0) + 1
    order = list(counts)
    rng.shuffle(order)
    chosen, total = [], 0
    for name in order:
        if total + counts[name] <= max_boxes:
            chosen.append(name)
            total += counts[name]
    if not chosen:
        return None, f"every class has more than {max_boxes} boxes"
    named = chosen[0] if len(chosen) == 1 else ", ".join(chosen[:-1]) + " and " + chosen[-1]
    return f"Detect {named} in this image.", [o for o in objects if o[0] in chosen]


def make_detection(settings: DetectionSettings, item: Item, seed: int) -> Outcome:
    """One image's boxes as a detection (<= 30 boxes) or referring (more) sample."""
    path, width, height, boxes = item.payload
    if not boxes:
        return Outcome(item.key, item.index, skipped="no objects")
    problem = check_image(path)
    if problem:
        return Outcome(item.key, item.index, skipped=problem if Path(path).exists() else "image file missing")
    if not width or not height:
        from PIL import Image

        with Image.open(path) as image:
            width, height = image.size
    objects = [(name, normalise(box, width, height)) for name, box in boxes]
    rng = random.Random(seed)
    image = relative_image(Path(path), Path(settings.out))
    records, questions = [], set()
    # A crowded image serves several samples, each with its own random classes (Vary-toy §3.1.1).
    for _ in range(settings.refer_samples if len(objects) > settings.max_boxes else 1):
        question, chosen = question_and_objects(objects, settings.max_boxes, rng)
        if question is None:
            return Outcome(item.key, item.index, skipped=chosen)
        if question not in questions:
            questions.add(question)
            records.append(conversation(image, question, answer(chosen), item.key))
    task = "detect_all" if len(objects) <= settings.max_boxes else "detect_classes"
    return Outcome(item.key, item.index, records=records, counts={task: len(records)})

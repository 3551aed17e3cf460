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
import math
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
        InputError: the file is missing or not JSON, or an entry is not COCO's shape (the message names
            the entry, e.g. `annotations[3]: "bbox" must be 4 numbers [x, y, w, h]`).
    """
    try:
        coco = json.loads(Path(annotations).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{annotations}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{annotations}: cannot read the COCO json ({exc})") from None
    if not isinstance(coco, dict) or not all(isinstance(coco.get(k), list) for k in ("images", "annotations",
                                                                                         "categories")):
        raise InputError(f"{annotations}: not COCO detection json (needs lists \"images\", \"annotations\" "
                         "and \"categories\")")
    def where(part: str, index: int) -> str:
        return f"{annotations}: {part}[{index}]"

    names = {}
    for index, category in enumerate(coco["categories"]):
        _require(category, ("id", "name"), where("categories", index))
        if not isinstance(category["name"], str) or not category["name"].strip():
            raise InputError(f"{where('categories', index)}: \"name\" must be a non-empty string")
        names[_id(category, "id", where("categories", index))] = _class_name(category["name"])
    boxes: dict = {}
    file_names: set[str] = set()
    for index, image in enumerate(coco["images"]):
        _require(image, ("id", "file_name"), where("images", index))
        if not isinstance(image["file_name"], str) or not image["file_name"].strip():
            raise InputError(f"{where('images', index)}: \"file_name\" must be a non-empty string, "
                             f"not {image['file_name']!r}")
        for side in ("width", "height"):
            value = image.get(side)
            if value is not None and not (_is_number(value) and value > 0):
                raise InputError(f"{where('images', index)}: \"{side}\" must be a positive number, not {value!r}")
        if image["file_name"] in file_names:  # the file name keys the item (journal, shard, seed)
            raise InputError(f"{where('images', index)}: file_name {image['file_name']!r} appears twice")
        file_names.add(image["file_name"])
        if _id(image, "id", where("images", index)) in boxes:
            raise InputError(f"{where('images', index)}: image id {image['id']!r} appears twice")
        boxes[image["id"]] = []
    for index, ann in enumerate(coco["annotations"]):
        _require(ann, ("image_id", "category_id", "bbox"), where("annotations", index))
        box = ann["bbox"]
        if not (isinstance(box, list) and len(box) == 4 and all(_is_number(v) for v in box)
                and box[2] >= 0 and box[3] >= 0):
            raise InputError(f"{where('annotations', index)}: \"bbox\" must be 4 numbers [x, y, w, h] with w, h "
                             f">= 0, not {json.dumps(box)[:80]}")
        _id(ann, "image_id", where("annotations", index))
        if _id(ann, "category_id", where("annotations", index)) not in names:
            raise InputError(f"{where('annotations', index)}: category_id {ann['category_id']!r} is not in "
                             "\"categories\"")
        if not ann.get("iscrowd") and ann["image_id"] in boxes:
            boxes[ann["image_id"]].append((names[ann["category_id"]], [float(v) for v in box]))
    entries = sorted(coco["images"], key=lambda image: image["file_name"])
    return [Item(image["file_name"], index,
                 (str(Path(images) / image["file_name"]), image.get("width"), image.get("height"),
                  tuple((name, tuple(box)) for name, box in boxes[image["id"]])))
            for index, image in enumerate(entries)]


def _require(entry, keys: tuple[str, ...], where: str) -> None:
    if not isinstance(entry, dict):
        raise InputError(f"{where}: expected an object, not {type(entry).__name__}")
    missing = [f'"{k}"' for k in keys if k not in entry]
    if missing:
        raise InputError(f"{where}: missing {', '.join(missing)}")


def _id(entry: dict, key: str, where: str) -> int | str:
    value = entry[key]
    if not isinstance(value, (int, str)) or isinstance(value, bool):
        raise InputError(f"{where}: \"{key}\" must be an integer or a string, not {json.dumps(value)[:40]}")
    return value


def _is_number(value) -> bool:
    # bool is an int to Python, not a coordinate; NaN and infinity are no box either.
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


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

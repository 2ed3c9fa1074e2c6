"""Captions of the built-in scenes, written from what the generator drew, and COCO caption files.

Every scene gets ``CAPTIONS_PER_IMAGE`` captions (COCO's own count), each a different seeded phrasing of the
same facts: the objects with colour, texture and shape (the category name is always the noun, so prompts
like "a photo of a star" can find it), how many of each, rough positions ("in the top left"), relations
between two objects ("left of", "above"), and occlusion ("partly hidden behind a blue disc"). Captions
therefore carry more than the tag list: counts, layout and occlusion are nowhere in the tags.

The phrasing draws from its own ``numpy`` Generator seeded by ``(seed, split, index, 1)``, apart from the
image's, so captions never change the pixels. ``write_captions`` / ``read_captions`` use COCO's caption
format (``annotations/captions_{split}.json``: ``images`` plus ``annotations`` of ``image_id`` and
``caption``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compress.errors import DataError

__all__ = ["CAPTIONS_PER_IMAGE", "SceneObject", "caption_scene", "read_captions"]

CAPTIONS_PER_IMAGE = 5

# One name per 30-degree hue step (the categories' hues are 0, 30, ..., 330 with +-10 degrees of jitter).
_COLOURS = ("red", "orange", "yellow", "lime", "green", "teal", "cyan", "azure", "blue", "violet", "magenta",
            "pink")  # fmt: skip
_TEXTURES = {"solid": ("plain", "solid"), "stripes": ("striped",), "checker": ("checkered", "chequered"),
             "dots": ("dotted", "spotted")}  # fmt: skip
_PLURALS = {"cross": "crosses"}
_COUNTS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
           "twelve")  # fmt: skip
_PREFIXES = ("a photo of", "an image of", "a picture of", "a scene with", "a photo showing", "")
_HIDDEN = 0.85  # an object with less than this share of its pixels visible is "partly hidden"


@dataclass(frozen=True)
class SceneObject:
    """What the caption needs of one drawn object.

    Attributes:
        name: the category (shape) name, e.g. ``"star"``.
        hue: the category's hue in degrees (the colour word).
        texture: ``solid``, ``stripes``, ``checker`` or ``dots``.
        centre: ``(x, y)`` of the visible pixels, as fractions of the image side.
        visible: share of the object's pixels left visible by later objects.
        occluder: index (in the scene's object list) of the object hiding most of it, or ``None``.
    """

    name: str
    hue: float
    texture: str
    centre: tuple[float, float]
    visible: float
    occluder: int | None = None


def colour_name(hue: float) -> str:
    """The colour word of a hue in degrees (nearest 30-degree step)."""
    return _COLOURS[int(round((hue % 360.0) / 30.0)) % 12]


def _plural(name: str, count: int) -> str:
    return name if count == 1 else _PLURALS.get(name, name + "s")


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _position(centre: tuple[float, float]) -> str:
    x, y = centre
    col = "left" if x < 1 / 3 else "right" if x > 2 / 3 else ""
    row = "top" if y < 1 / 3 else "bottom" if y > 2 / 3 else ""
    if not col and not row:
        return "in the centre"
    if not row:
        return f"on the {col}"
    if not col:
        return f"at the {row}"
    return f"in the {row} {col}"


def _relation(a: SceneObject, b: SceneObject) -> str:
    """Where ``a`` lies relative to ``b``, along the axis on which they differ most."""
    dx, dy = a.centre[0] - b.centre[0], a.centre[1] - b.centre[1]
    if abs(dx) >= abs(dy):
        return "left of" if dx < 0 else "right of"
    return "above" if dy < 0 else "below"


class _Phrase:
    """Noun phrases of one caption: each caption decides once whether to say colours and textures."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.colour = rng.random() < 0.85
        self.texture = rng.random() < 0.6

    def adjectives(self, obj: SceneObject) -> list[str]:
        words = []
        if self.colour:
            words.append(colour_name(obj.hue))
        if self.texture:
            choices = _TEXTURES[obj.texture]
            words.append(choices[int(self.rng.integers(len(choices)))])
        return words

    def one(self, obj: SceneObject) -> str:
        words = [*self.adjectives(obj), obj.name]
        return f"{_article(words[0])} {' '.join(words)}"

    def group(self, objs: list[SceneObject]) -> str:
        if len(objs) == 1:
            return self.one(objs[0])
        return " ".join([_COUNTS[min(len(objs), 12)], *self.adjectives(objs[0]), _plural(objs[0].name, 2)])


def _join(parts: list[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _groups(objects: list[SceneObject]) -> list[list[SceneObject]]:
    out: dict[str, list[SceneObject]] = {}
    for obj in objects:
        out.setdefault(obj.name, []).append(obj)
    return list(out.values())


def _counted(objects: list[SceneObject], p: _Phrase) -> str:
    groups = _groups(objects)
    p.rng.shuffle(groups)  # type: ignore[arg-type]
    return _join([p.group(g) for g in groups])


def _placed(objects: list[SceneObject], p: _Phrase) -> str:
    order = list(p.rng.permutation(len(objects)))
    return _join([f"{p.one(objects[i])} {_position(objects[i].centre)}" for i in order])


def _related(objects: list[SceneObject], p: _Phrase) -> str:
    if len(objects) < 2:
        return f"{p.one(objects[0])} {_position(objects[0].centre)}"
    i, j = (int(v) for v in p.rng.choice(len(objects), size=2, replace=False))
    text = f"{p.one(objects[i])} {_relation(objects[i], objects[j])} {p.one(objects[j])}"
    rest = [objects[k] for k in range(len(objects)) if k not in (i, j)]
    return text + (f", with {_counted(rest, p)}" if rest else "")


def _occluded(objects: list[SceneObject], p: _Phrase) -> str:
    hidden = [k for k, o in enumerate(objects) if o.visible < _HIDDEN and o.occluder is not None]
    if not hidden:
        return _counted(objects, p) + (", none hidden" if len(objects) > 1 and p.rng.random() < 0.3 else "")
    k = hidden[int(p.rng.integers(len(hidden)))]
    obj, front = objects[k], objects[objects[k].occluder]  # type: ignore[index]
    text = f"{p.one(obj)} partly hidden behind {p.one(front)}"
    rest = [o for m, o in enumerate(objects) if m not in (k, obj.occluder)]
    return text + (f", and {_counted(rest, p)}" if rest else "")


_STYLES = (_counted, _placed, _related, _occluded)


def caption_scene(
    objects: list[SceneObject], rng: np.random.Generator, count: int = CAPTIONS_PER_IMAGE
) -> list[str]:
    """``count`` captions of one scene, each a seeded phrasing (every style once before any repeats)."""
    if not objects:
        return ["an empty background"] * count
    styles = [_STYLES[int(i) % len(_STYLES)] for i in rng.permutation(max(count, len(_STYLES)))][:count]
    captions = []
    for style in styles:
        prefix = _PREFIXES[int(rng.integers(len(_PREFIXES)))]
        body = style(objects, _Phrase(rng))
        captions.append(f"{prefix} {body}".strip())
    return captions


def scene_objects(
    drawn: list[tuple[int, np.ndarray, int, int | None]], categories: tuple
) -> list[SceneObject]:
    """``SceneObject`` of each drawn ``(category index, visible mask, full area, occluder)``; empty ones dropped."""
    out: list[SceneObject] = []
    index: dict[int, int] = {}
    for k, (cat, visible, area, occluder) in enumerate(drawn):
        if not visible.any():
            continue
        rows, cols = np.nonzero(visible)
        side = visible.shape[0]
        c = categories[cat]
        index[k] = len(out)
        out.append(
            SceneObject(
                c.name,
                c.hue,
                c.texture,
                (float(cols.mean() + 0.5) / side, float(rows.mean() + 0.5) / side),
                float(visible.sum()) / max(area, 1),
                occluder,
            )  # fmt: skip
        )
    # occluder indices refer to the drawn list; remap them to the kept objects
    return [
        SceneObject(o.name, o.hue, o.texture, o.centre, o.visible, index.get(o.occluder))  # type: ignore[arg-type]
        if o.occluder is not None
        else o
        for o in out
    ]


def captions_doc(images: list[dict], captions: list[list[str]], info: dict) -> dict:
    """A COCO captions document: the ``images`` entries and one annotation per caption."""
    annotations = [
        {"id": 0, "image_id": img["id"], "caption": text}
        for img, texts in zip(images, captions, strict=True)
        for text in texts
    ]
    for n, ann in enumerate(annotations, 1):
        ann["id"] = n
    return {"info": info, "images": images, "annotations": annotations}


def read_captions(path: Path, image_ids: list[int]) -> list[list[str]]:
    """The captions of each image id (in the given order) from a COCO captions JSON; DataError if malformed."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read COCO captions ({exc}); is it a captions JSON?") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("annotations"), list):
        raise DataError(f"{path}: missing list field 'annotations'; a COCO captions file needs it")
    by_image: dict[int, list[str]] = {i: [] for i in image_ids}
    for n, ann in enumerate(doc["annotations"]):
        if not isinstance(ann, dict):
            raise DataError(f"{path}: annotations[{n}] must be a JSON object, but got {ann!r:.80}")
        iid, text = ann.get("image_id"), ann.get("caption")
        if isinstance(iid, bool) or not isinstance(iid, int):
            raise DataError(
                f"{path}: annotations[{n}]: field 'image_id' must be an integer, but got {iid!r:.80}"
            )
        if not isinstance(text, str):
            raise DataError(
                f"{path}: annotations[{n}]: field 'caption' must be a string, but got {text!r:.80}"
            )
        if iid not in by_image:
            raise DataError(
                f"{path}: annotations[{n}]: field 'image_id' {iid} is not an image of the instances file"
            )
        by_image[iid].append(" ".join(text.split()))
    return [by_image[i] for i in image_ids]

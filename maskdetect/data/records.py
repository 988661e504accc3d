"""The common in-memory form every reader produces, and the log of what was skipped and why.

Readers turn VOC/KITTI/COCO/YOLO/TFRecord annotations into :class:`Item` objects (annotation parsed, image not yet
read); :mod:`maskdetect.data.images` loads the image and turns an Item into a :class:`Sample` (checked image bytes,
clipped pixel boxes); :mod:`maskdetect.data.tfrecord` writes Samples as tf.Examples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from maskdetect.errors import DataError


@dataclass(frozen=True)
class RawBox:
    """A box as annotated: pixel ``x1 y1 x2 y2`` or, if ``normalised``, fractions of the image size."""

    name: str
    xyxy: tuple[float, float, float, float]
    normalised: bool = False


@dataclass
class Item:
    """One annotated image as a reader found it.

    Attributes:
        key: where it came from, for messages (annotation file, or ``file.tfrecord#12``).
        filename: image file name written to ``image/filename`` (basename).
        image: path of the image file, or its bytes (TFRecord input).
        boxes: the annotated boxes (names before ``class_map``).
        dropped: boxes the reader could not use, as ``(description, reason)``.
        declared_wh: image size written in the annotation, if any (checked against the real one).
        split: split named by the source (``train``/``val``/``test``), used by ``split="keep"``.
    """

    key: str
    filename: str
    image: Path | bytes
    boxes: list[RawBox] = field(default_factory=list)
    dropped: list[tuple[str, str]] = field(default_factory=list)
    declared_wh: tuple[int, int] | None = None
    split: str | None = None


@dataclass(frozen=True)
class Skip:
    """An input that could not be used at all: ``key`` names the file, ``reason`` says why, ``fix`` what to do."""

    key: str
    reason: str
    fix: str = ""
    is_error: bool = True  # False for items dropped on purpose by a filter (e.g. every face too blurred)

    def error(self) -> DataError:
        return DataError(f"{self.key}: {self.reason}." + (f" {self.fix}" if self.fix else ""))


@dataclass
class Sample:
    """An image ready to write: JPEG bytes, real size, clipped pixel boxes with their (mapped) class names."""

    key: str
    filename: str
    jpeg: bytes
    sha256: str  # of the source image bytes (byte-identical images share it)
    width: int
    height: int
    names: list[str]
    xyxy: list[tuple[float, float, float, float]]
    blur: list[float] = field(default_factory=list)
    converted: bool = False  # re-encoded (PNG, RGBA, CMYK, ...) rather than original JPEG bytes
    split: str | None = None


SPLITS = ("train", "val", "test")


def split_from_name(path: str | Path) -> str | None:
    """``train``/``val``/``test`` if the file name or its folder says so (Roboflow's ``valid`` is ``val``)."""
    parts = [p.lower() for p in Path(path).parts[-2:]]
    for part in reversed(parts):
        for token in _tokens(part):
            if token in ("train", "training"):
                return "train"
            if token in ("val", "valid", "validation", "eval"):
                return "val"
            if token in ("test", "testing"):
                return "test"
    return None


def _tokens(name: str) -> list[str]:
    import re

    return [t for t in re.split(r"[^a-z]+", name) if t]

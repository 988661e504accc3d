"""Review queue: frames worth a human look, saved with pre-annotations in Pascal VOC XML.

A frame is queued when a tracked face's raw class disagrees with its smoothed class or its smoothed class
changed (reason ``class_flip``), or when a box's confidence is in ``[low, high)`` (reason
``low_confidence``). Layout, ready for ``maskdetect data convert --format voc``::

    <review_dir>/images/<prefix>_f000123.jpg
    <review_dir>/annotations/<prefix>_f000123.xml
    <review_dir>/index.jsonl          # one line per saved frame: file, frame, reasons, boxes with scores

Rate limits: per reason at most one frame every `every_n_frames` frames, and `max_frames` in total.

Nothing in the folder is ever replaced: a person may have corrected an annotation there. Each image and
annotation is written under a temporary name and published with a hard link that fails if the name is taken
(atomic, and never over a file); a name taken by an earlier run (or by a file of yours) gets the next free
``-2``, ``-3``, ... suffix, for the image and its annotation together. ``index.jsonl`` is only appended to, one
line per write, so runs sharing the folder never interleave lines.
"""

from __future__ import annotations

import json
import logging
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Collection, Sequence

import numpy as np

from maskdetect.detections import Detections
from maskdetect.errors import ConfigError
from maskdetect.fileio import make_partial
from maskdetect.monitor.track import SMOOTHED_CLASS_KEY

logger = logging.getLogger(__name__)

CLASS_FLIP = "class_flip"
LOW_CONFIDENCE = "low_confidence"


def _publish_new(tmp: Path, path: Path) -> bool:
    """Give the complete file `tmp` the name `path` only if no file has it (a hard link: atomic, never over a
    file). False when the name is taken."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    except OSError:  # a file system without hard links: an exclusive create, never over a file either
        try:
            with open(path, "xb") as out:
                out.write(tmp.read_bytes())
        except FileExistsError:
            return False
    return True


def voc_xml(filename: str, resolution_wh: tuple[int, int], xyxy: np.ndarray, names: Sequence[str]) -> str:
    """A Pascal VOC ``<annotation>`` for one image (boxes rounded to whole pixels, clipped to the image).

    Example:
        >>> "<name>with_mask</name>" in voc_xml("a.jpg", (64, 48), np.array([[1, 2, 30, 40]]), ["with_mask"])
        True
    """
    width, height = resolution_wh
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "images"
    ET.SubElement(root, "filename").text = filename
    ET.SubElement(ET.SubElement(root, "source"), "database").text = "maskdetect review queue"
    size = ET.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    ET.SubElement(root, "segmented").text = "0"
    limits = np.array([width, height, width, height])
    for box, name in zip(np.asarray(xyxy).reshape(-1, 4), names):
        x1, y1, x2, y2 = np.clip(np.rint(box), 0, limits).astype(int).tolist()
        if x2 <= x1 or y2 <= y1:
            continue
        obj = ET.SubElement(root, "object")
        for tag, value in (("name", name), ("pose", "Unspecified"), ("truncated", "0"), ("difficult", "0")):
            ET.SubElement(obj, tag).text = value
        bndbox = ET.SubElement(obj, "bndbox")
        for tag, value in (("xmin", x1), ("ymin", y1), ("xmax", x2), ("ymax", y2)):
            ET.SubElement(bndbox, tag).text = str(value)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


class ReviewQueue:
    """Saves frames that need review (see the module docstring).

    Args:
        root: Review directory.
        class_names: Names for class indices (the VOC ``<name>``).
        prefix: File name prefix (e.g. the video's stem) so several videos can share one queue.
        low: Lower confidence bound of the ``low_confidence`` reason (inclusive).
        high: Upper bound (exclusive).
        every_n_frames: Per reason, frames closer than this to the last saved frame with that reason are skipped.
        max_frames: Stop saving after this many frames.
        jpeg_quality: Pillow JPEG quality.
    """

    def __init__(self, root: str | Path, class_names: Sequence[str], *, prefix: str = "frame", low: float = 0.3,
                 high: float = 0.6, every_n_frames: int = 30, max_frames: int = 200, jpeg_quality: int = 90) -> None:
        if not 0.0 <= low <= high <= 1.0:
            raise ConfigError(f"review confidence band must satisfy 0 <= low <= high <= 1, got [{low}, {high})")
        if every_n_frames < 1 or max_frames < 0:
            raise ConfigError("review every_n_frames must be >= 1 and max_frames >= 0")
        self.root = Path(root)
        self.class_names = list(class_names)
        self.prefix = re.sub(r"[^A-Za-z0-9._-]+", "_", prefix) or "frame"
        self.low, self.high = low, high
        self.every_n_frames, self.max_frames, self.jpeg_quality = every_n_frames, max_frames, jpeg_quality
        self.saved: list[Path] = []
        self.by_reason: dict[str, int] = {CLASS_FLIP: 0, LOW_CONFIDENCE: 0}
        self._last_saved: dict[str, int] = {}
        self._full_logged = False

    def reasons(self, detections: Detections, changed_track_ids: Collection[int] = ()) -> list[str]:
        """Why this frame deserves review (empty: it does not)."""
        found = []
        smoothed = detections.data.get(SMOOTHED_CLASS_KEY)
        if detections.tracker_id is not None and smoothed is not None and len(detections):
            tracked = detections.tracker_id >= 0
            flipped = tracked & (smoothed != detections.class_id)
            changed = np.isin(detections.tracker_id, list(changed_track_ids))
            if np.any(flipped | changed):
                found.append(CLASS_FLIP)
        if np.any((detections.confidence >= self.low) & (detections.confidence < self.high)):
            found.append(LOW_CONFIDENCE)
        return found

    def consider(self, frame_index: int, frame_rgb: np.ndarray | None, detections: Detections,
                 changed_track_ids: Collection[int] = ()) -> list[str]:
        """Save the frame if it has a reason that is not rate-limited; return the reasons saved (or [])."""
        reasons = self.reasons(detections, changed_track_ids)
        due = [r for r in reasons if frame_index - self._last_saved.get(r, -10**12) >= self.every_n_frames]
        if not due or frame_rgb is None:
            return []
        if len(self.saved) >= self.max_frames:
            if not self._full_logged:
                logger.info("review queue full (%d frames); not saving more", self.max_frames)
                self._full_logged = True
            return []
        self._save(frame_index, frame_rgb, detections, reasons)
        for reason in reasons:
            self._last_saved[reason] = frame_index
            self.by_reason[reason] += 1
        return reasons

    def _save(self, frame_index: int, frame_rgb: np.ndarray, detections: Detections, reasons: list[str]) -> None:
        from PIL import Image

        frame = np.ascontiguousarray(frame_rgb, dtype=np.uint8)
        height, width = frame.shape[:2]
        classes = detections.data.get(SMOOTHED_CLASS_KEY, detections.class_id)
        names = [self.class_names[int(c)] for c in classes]
        images, annotations = self.root / "images", self.root / "annotations"
        annotations.mkdir(parents=True, exist_ok=True)
        image_tmp, xml_tmp = make_partial(images / "frame.jpg", suffix=".jpg"), None
        try:
            Image.fromarray(frame, "RGB").save(image_tmp, format="JPEG", quality=self.jpeg_quality)
            base = f"{self.prefix}_f{frame_index:06d}"
            for attempt in range(1, 10_000):
                stem = base if attempt == 1 else f"{base}-{attempt}"
                image_path, xml_path = images / f"{stem}.jpg", annotations / f"{stem}.xml"
                if xml_path.exists() or xml_path.is_symlink() or not _publish_new(image_tmp, image_path):
                    continue
                xml_tmp = make_partial(xml_path, suffix=".xml")
                xml_tmp.write_text(voc_xml(image_path.name, (width, height), detections.xyxy, names), encoding="utf-8")
                if _publish_new(xml_tmp, xml_path):  # the image first: an annotation never points at nothing
                    break
                image_path.unlink()  # the annotation's name was taken meanwhile: try the next pair
            else:
                raise ConfigError(f"{self.root}: no free name for review frame {frame_index}")
        finally:
            for tmp in (image_tmp, xml_tmp):
                if tmp is not None:
                    tmp.unlink(missing_ok=True)
        record: dict[str, Any] = {"image": f"images/{image_path.name}", "annotation": f"annotations/{xml_path.name}",
                                  "frame_index": frame_index, "reasons": reasons,
                                  "boxes": detections.to_records(self.class_names)}
        fd = os.open(self.root / "index.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            os.write(fd, (json.dumps(record) + "\n").encode("utf-8"))
        finally:
            os.close(fd)
        self.saved.append(image_path)
        logger.debug("review: saved %s (%s)", image_path, ", ".join(reasons))

    def summary(self) -> dict[str, Any]:
        return {"dir": str(self.root), "saved": len(self.saved), "by_reason": dict(self.by_reason),
                "low": self.low, "high": self.high, "every_n_frames": self.every_n_frames,
                "max_frames": self.max_frames}

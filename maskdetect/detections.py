"""`Detections`: the one result type that flows from the model to the tracker, the annotator and JSON.

It knows its class names, and turns itself into JSON (:meth:`Detections.to_json`), a picture
(:meth:`Detections.annotate`), a file (:meth:`Detections.save`) or a ``supervision.Detections``
(:meth:`Detections.to_supervision`, :meth:`Detections.from_supervision`: the one converter in the package).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import supervision as sv

#: The package's classes (``maskdetect.CLASSES``), the default of :attr:`Detections.class_names`.
DEFAULT_CLASS_NAMES = ("with_mask", "without_mask", "mask_weared_incorrect")


@dataclass
class Detections:
    """Boxes found in one image.

    Attributes:
        xyxy: ``(N, 4)`` float32 pixel boxes ``x1, y1, x2, y2``.
        confidence: ``(N,)`` float32 scores in [0, 1].
        class_id: ``(N,)`` int64, 0-based index into `class_names`.
        tracker_id: ``(N,)`` int64 track ids, or None before tracking.
        data: extra per-box arrays of length N (e.g. ``{"smoothed_class_id": ...}``).
        class_names: the model's class names (``maskdetect.CLASSES`` by default; a `Predictor` sets its model's).

    Example:
        >>> d = Detections(xyxy=np.array([[0, 0, 10, 10], [5, 5, 9, 9]]), confidence=np.array([0.9, 0.2]),
        ...                class_id=np.array([0, 1]))
        >>> len(d[d.confidence > 0.5])
        1
        >>> d.labels
        ['with_mask', 'without_mask']
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    tracker_id: np.ndarray | None = None
    data: dict[str, np.ndarray] = field(default_factory=dict)
    class_names: Sequence[str] = DEFAULT_CLASS_NAMES

    def __post_init__(self) -> None:
        self.class_names = tuple(str(name) for name in self.class_names)
        self.xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        n = len(self.xyxy)
        self.confidence = np.asarray(self.confidence, dtype=np.float32).reshape(-1)
        self.class_id = np.asarray(self.class_id, dtype=np.int64).reshape(-1)
        if self.tracker_id is not None:
            self.tracker_id = np.asarray(self.tracker_id, dtype=np.int64).reshape(-1)
        arrays = {"confidence": self.confidence, "class_id": self.class_id, "tracker_id": self.tracker_id}
        self.data = {key: np.asarray(value) for key, value in self.data.items()}
        arrays.update({f"data[{key!r}]": value for key, value in self.data.items()})
        for name, value in arrays.items():
            if value is not None and len(value) != n:
                raise ValueError(f"Detections.{name} has {len(value)} entries, xyxy has {n}")
        if n and not np.all(np.isfinite(self.xyxy)):
            raise ValueError("Detections.xyxy contains NaN or infinite coordinates")

    # -- constructors -------------------------------------------------------------------------------------
    @classmethod
    def empty(cls, class_names: Sequence[str] = DEFAULT_CLASS_NAMES) -> "Detections":
        return cls(xyxy=np.zeros((0, 4), np.float32), confidence=np.zeros(0, np.float32),
                   class_id=np.zeros(0, np.int64), class_names=class_names)

    @classmethod
    def from_supervision(cls, detections: "sv.Detections", class_names: Sequence[str] | None = None
                         ) -> "Detections":
        """From a ``supervision.Detections`` (what Ultralytics, Roboflow and ``trackers`` produce).

        Args:
            detections: the supervision result; a missing ``confidence`` becomes 1.0 and a missing ``class_id`` 0.
            class_names: names for its class ids; default: its ``data["class_name"]`` per box when present
                (ids must then map to one name each), else ``maskdetect.CLASSES``.

        Raises:
            ValueError: a class id has no name, or one id carries two names.
        """
        n = len(detections.xyxy)
        data = {key: np.asarray(value) for key, value in (detections.data or {}).items() if key != "class_name"}
        class_id = np.zeros(n, np.int64) if detections.class_id is None else np.asarray(detections.class_id)
        if class_names is None:
            names_per_box = (detections.data or {}).get("class_name")
            if names_per_box is None:
                class_names = DEFAULT_CLASS_NAMES
            else:
                by_id: dict[int, str] = {}
                for class_index, name in zip(class_id.tolist(), np.asarray(names_per_box).tolist()):
                    if by_id.setdefault(int(class_index), str(name)) != str(name):
                        raise ValueError(f"class id {class_index} is named both {by_id[class_index]!r} and {name!r}")
                class_names = [by_id.get(i, f"class_{i}") for i in range(max(by_id, default=-1) + 1)]
        if n and int(class_id.max()) >= len(class_names):
            raise ValueError(f"class id {int(class_id.max())} has no name in {list(class_names)}")
        return cls(xyxy=detections.xyxy,
                   confidence=np.ones(n, np.float32) if detections.confidence is None else detections.confidence,
                   class_id=class_id, tracker_id=detections.tracker_id, data=data, class_names=class_names)

    @classmethod
    def from_normalized(cls, boxes_yxyx: np.ndarray, scores: np.ndarray, class_ids: np.ndarray,
                        resolution_wh: tuple[int, int], *, num_detections: int | None = None) -> "Detections":
        """From normalised ``ymin, xmin, ymax, xmax`` boxes (the OD API's order) and 0-based class ids."""
        boxes = np.asarray(boxes_yxyx, dtype=np.float32).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float32).reshape(-1)
        class_ids = np.asarray(class_ids).reshape(-1)
        if num_detections is not None:
            boxes, scores, class_ids = boxes[:num_detections], scores[:num_detections], class_ids[:num_detections]
        width, height = resolution_wh
        xyxy = np.clip(boxes[:, [1, 0, 3, 2]], 0.0, 1.0) * np.array([width, height, width, height], np.float32)
        return cls(xyxy=xyxy, confidence=scores, class_id=np.rint(class_ids).astype(np.int64))

    @classmethod
    def from_saved_model(cls, outputs: Mapping[str, Any], resolution_wh: tuple[int, int]) -> "Detections":
        """From the exported SavedModel's ``serving_default`` outputs for one image (batch of 1).

        ``detection_classes`` there are 1-based label-map ids (as floats); they become 0-based here.
        """
        def first(key: str) -> np.ndarray:
            return np.asarray(outputs[key])[0]

        num = int(first("num_detections"))
        return cls.from_normalized(first("detection_boxes"), first("detection_scores"),
                                   first("detection_classes") - 1, resolution_wh, num_detections=num)

    @classmethod
    def from_tflite(cls, boxes: np.ndarray, class_ids: np.ndarray, scores: np.ndarray, num_detections: Any,
                    resolution_wh: tuple[int, int]) -> "Detections":
        """From the TFLite SSD post-processing outputs for one image (classes there are already 0-based)."""
        num = int(np.asarray(num_detections).reshape(-1)[0])
        return cls.from_normalized(np.asarray(boxes)[0], np.asarray(scores)[0], np.asarray(class_ids)[0],
                                   resolution_wh, num_detections=num)

    @classmethod
    def merge(cls, items: Sequence["Detections"]) -> "Detections":
        items = [d for d in items if len(d)]
        if not items:
            return cls.empty()
        tracked = all(d.tracker_id is not None for d in items)
        keys = set.intersection(*(set(d.data) for d in items))
        return cls(
            xyxy=np.concatenate([d.xyxy for d in items]),
            confidence=np.concatenate([d.confidence for d in items]),
            class_id=np.concatenate([d.class_id for d in items]),
            tracker_id=np.concatenate([d.tracker_id for d in items]) if tracked else None,
            data={k: np.concatenate([d.data[k] for d in items]) for k in keys},
            class_names=items[0].class_names,
        )

    # -- container behaviour ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.xyxy)

    def __iter__(self) -> Iterator["Detections"]:
        for i in range(len(self)):
            yield self[i : i + 1]

    def __getitem__(self, index: Any) -> "Detections":
        """NumPy-style selection (boolean mask, index array, slice or int) into a new `Detections`."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        return Detections(
            xyxy=self.xyxy[index],
            confidence=self.confidence[index],
            class_id=self.class_id[index],
            tracker_id=None if self.tracker_id is None else self.tracker_id[index],
            data={key: value[index] for key, value in self.data.items()},
            class_names=self.class_names,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Detections):
            return NotImplemented
        same_tracks = (self.tracker_id is None and other.tracker_id is None) or (
            self.tracker_id is not None and other.tracker_id is not None
            and np.array_equal(self.tracker_id, other.tracker_id))
        return (self.class_names == other.class_names
                and np.allclose(self.xyxy, other.xyxy) and np.allclose(self.confidence, other.confidence)
                and np.array_equal(self.class_id, other.class_id) and same_tracks
                and self.data.keys() == other.data.keys()
                and all(np.array_equal(self.data[k], other.data[k]) for k in self.data))

    @property
    def labels(self) -> list[str]:
        """The class name of each box."""
        return [self.class_names[int(i)] for i in self.class_id]

    @property
    def area(self) -> np.ndarray:
        return (self.xyxy[:, 2] - self.xyxy[:, 0]) * (self.xyxy[:, 3] - self.xyxy[:, 1])

    # -- post-processing ----------------------------------------------------------------------------------
    def with_threshold(self, threshold: float | Mapping[int, float]) -> "Detections":
        """Keep boxes at or above a score threshold: one for all classes, or ``{class_id: threshold}``
        (classes not in the mapping are kept at any score)."""
        if isinstance(threshold, Mapping):
            limits = np.array([threshold.get(int(c), 0.0) for c in self.class_id], np.float32)
            return self[self.confidence >= limits]
        return self[self.confidence >= float(threshold)]

    def with_cross_class_nms(self, iou_threshold: float = 0.5) -> "Detections":
        """Suppress overlapping boxes whatever their class, keeping the most confident (one face, one box)."""
        if len(self) < 2:
            return self
        order = np.argsort(-self.confidence, kind="stable")
        ious = box_iou(self.xyxy[order], self.xyxy[order])
        keep = np.ones(len(order), bool)
        for i in range(len(order)):
            if keep[i]:
                keep[i + 1 :] &= ious[i, i + 1 :] <= iou_threshold
        return self[np.sort(order[keep])]

    def to_records(self, class_names: Sequence[str] | None = None, **extra: Any) -> list[dict[str, Any]]:
        """JSON-ready dicts: ``{**extra, "bbox_xyxy", "label", "score"}`` (+ ``"track_id"`` when tracked,
        + any per-box ``data`` values). Labels come from `class_names`, by default :attr:`class_names`."""
        class_names = self.class_names if class_names is None else class_names
        records = []
        for i in range(len(self)):
            record = dict(extra)
            record["bbox_xyxy"] = [round(float(v), 2) for v in self.xyxy[i]]
            record["label"] = class_names[int(self.class_id[i])]
            record["score"] = round(float(self.confidence[i]), 4)
            if self.tracker_id is not None:
                record["track_id"] = int(self.tracker_id[i])
            for key, value in self.data.items():
                item = value[i]
                record[key] = item.item() if hasattr(item, "item") else item
            records.append(record)
        return records

    # -- outputs ------------------------------------------------------------------------------------------
    def to_json(self, **extra: Any) -> str:
        """The boxes as a JSON list (:meth:`to_records`; `extra` keys are added to every record).

        Example:
            >>> Detections(xyxy=[[1, 2, 3, 4]], confidence=[0.5], class_id=[1]).to_json()
            '[{"bbox_xyxy": [1.0, 2.0, 3.0, 4.0], "label": "without_mask", "score": 0.5}]'
        """
        return json.dumps(self.to_records(**extra))

    def annotate(self, image: Any, *, order: str = "rgb", banner: str | None = None) -> np.ndarray:
        """A new image with the boxes and labels drawn (the input is not modified).

        Args:
            image: what the boxes were found in: a ``uint8`` array ``(H, W, 3)``, a PIL image or a path.
            order: an array's channel order, as for ``Predictor.predict``: ``"rgb"`` (default) or ``"bgr"``
                (``cv2.imread``); the result comes back in the same order (paths and PIL images: RGB).
            banner: a line of text drawn across the top (e.g. an alert).
        """
        from maskdetect.infer.annotate import FrameAnnotator

        if order not in ("rgb", "bgr"):
            raise ValueError(f"order={order!r}: an array's channel order is 'rgb' or 'bgr'")
        rgb = _rgb(image)
        if order == "bgr" and rgb is image:
            return FrameAnnotator(self.class_names).annotate(rgb[..., ::-1], self, banner=banner)[..., ::-1]
        return FrameAnnotator(self.class_names).annotate(rgb, self, banner=banner)

    def save(self, path: str | os.PathLike, image: Any = None) -> Path:
        """Write the result to `path`, atomically: ``.json`` gets :meth:`to_json`'s records; an image suffix
        (``.jpg``, ``.png``, ...) gets :meth:`annotate` of `image`.

        Raises:
            ValueError: an image suffix without `image`, or a suffix that is neither.
        """
        from maskdetect.fileio import atomic_write_text
        from maskdetect.media import IMAGE_SUFFIXES

        path = Path(path)
        if path.suffix.lower() == ".json":
            return atomic_write_text(path, json.dumps(self.to_records(), indent=2) + "\n")
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise ValueError(f"{path}: save writes .json or an image ({', '.join(IMAGE_SUFFIXES)})")
        if image is None:
            raise ValueError(f"{path}: an annotated image needs the image the boxes were found in: save(path, image)")
        import cv2

        from maskdetect.fileio import atomic_path

        ok, encoded = cv2.imencode(path.suffix, cv2.cvtColor(self.annotate(image), cv2.COLOR_RGB2BGR))
        if not ok:
            raise ValueError(f"{path}: OpenCV cannot encode images with suffix {path.suffix!r}")
        with atomic_path(path) as tmp:
            tmp.write_bytes(encoded.tobytes())
        return path

    def to_supervision(self) -> "sv.Detections":
        """This result as a ``supervision.Detections``: the same boxes, scores, class and track ids, our per-box
        ``data``, and ``data["class_name"]`` (supervision's convention), for its annotators, zones and metrics."""
        import supervision as sv

        data = {key: np.asarray(value) for key, value in self.data.items()}
        data["class_name"] = np.array(self.labels, dtype=str) if len(self) else np.zeros(0, dtype=str)
        return sv.Detections(xyxy=self.xyxy.astype(np.float32).reshape(-1, 4),
                             confidence=self.confidence.astype(np.float32), class_id=self.class_id.astype(int),
                             tracker_id=None if self.tracker_id is None else self.tracker_id.astype(int), data=data)


def _rgb(image: Any) -> np.ndarray:
    """An array as it is (the same object), a PIL image or an image path as an RGB ``uint8`` array."""
    if isinstance(image, (str, os.PathLike)):
        from maskdetect.media import read_image

        return read_image(image)
    if not isinstance(image, np.ndarray) and hasattr(image, "convert") and hasattr(image, "mode"):  # PIL
        return np.asarray(image.convert("RGB"))
    return image if isinstance(image, np.ndarray) else np.asarray(image)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of two sets of ``xyxy`` boxes: ``(len(a), len(b))``."""
    a = np.asarray(a, np.float32).reshape(-1, 4)
    b = np.asarray(b, np.float32).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)

"""The second stage: each face the detector found is classified again from a crop of the frame at its native
resolution, by a small CNN (``classifier.tflite`` + ``classifier.json`` in an export folder, made by
:func:`maskdetect.train.classifier.train_classifier`; :attr:`maskdetect.infer.bundle.ExportBundle.classifier` finds
it).

The detector sees a whole frame shrunk to its input (320 px in training, where the median Kaggle face is 20 px):
it finds faces well and tells a mask from a bare face less well. The crop classifier sees each face at 48 px from
the full-resolution frame. It keeps the detector's boxes, replaces each class by the classifier's, and scores
each face by the detector's score times the classifier's probability of that class (measured on the Kaggle val set
with the bundled model of then: mAP@0.5 0.569 against 0.558 keeping the detector's score, and 0.478 without the
second stage; docs/experiments.md C1). The detector's own class and score stay in
``Detections.data["detector_class_id"]`` and ``["detector_confidence"]``.

Example:
    >>> classifier = FaceClassifier("maskdetect/models/default/classifier.tflite")   # doctest: +SKIP
    >>> detections = classifier.refine(rgb_image, detections)                       # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np

from maskdetect.detections import Detections
from maskdetect.errors import ConfigError
from maskdetect.infer.bundle import classifier_spec_path
from maskdetect.infer.tflite import tflite_interpreter_class


def face_crops(image: np.ndarray, xyxy: np.ndarray, size: int, margin: float) -> np.ndarray:
    """``(N, size, size, 3)`` uint8 square crops centred on each box, of side ``margin`` x the box's longer side
    (at least 2 px), resampled bilinearly; pixels outside the image repeat its border."""
    import cv2

    boxes = np.asarray(xyxy, np.float32).reshape(-1, 4)
    crops = np.empty((len(boxes), size, size, 3), np.uint8)
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        scale = size / (max(x2 - x1, y2 - y1, 2.0) * margin)
        matrix = np.array([[scale, 0, size / 2 - scale * (x1 + x2) / 2],
                           [0, scale, size / 2 - scale * (y1 + y2) / 2]], np.float32)
        crops[i] = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REPLICATE)
    return crops


class FaceClassifier:
    """A loaded crop classifier.

    Args:
        path: ``classifier.tflite``; its spec ``classifier.json`` (crop size, margin, class names) must be beside it.
        num_threads: interpreter threads (default: every core).
        tflite_runtime: ``"auto"``, ``"litert"`` or ``"tf.lite"`` (:mod:`maskdetect.infer.tflite`).

    Attributes:
        class_names: the classes it tells apart, in its output order.
        input_size, margin: how crops are cut (:func:`face_crops`).
    """

    def __init__(self, path: str | os.PathLike, *, num_threads: int | None = None,
                 tflite_runtime: str = "auto") -> None:
        self.path = Path(path)
        spec_path = classifier_spec_path(self.path)
        try:
            spec = json.loads(spec_path.read_text(encoding="utf-8"))
            self.input_size, self.margin = int(spec["input_size"]), float(spec["margin"])
            self.class_names = [str(name) for name in spec["classes"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{spec_path}: missing or malformed ({exc}); it is written beside the classifier "
                              "by `maskdetect classifier RUN`") from exc
        self.runtime, interpreter_class = tflite_interpreter_class(tflite_runtime)
        try:
            self._interpreter = interpreter_class(model_path=str(self.path), num_threads=num_threads or os.cpu_count())
            self._interpreter.allocate_tensors()
        except Exception as exc:
            raise ConfigError(f"{self.path}: cannot load the classifier ({exc})") from exc
        (self._input,) = self._interpreter.get_input_details()
        (self._output,) = self._interpreter.get_output_details()
        if list(self._input["shape"][1:]) != [self.input_size, self.input_size, 3] \
                or int(self._output["shape"][-1]) != len(self.class_names):
            raise ConfigError(f"{self.path}: input {list(self._input['shape'])} / output "
                              f"{list(self._output['shape'])} do not match {spec_path.name}")
        self._batch = 1
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"FaceClassifier({str(self.path)!r}, {self.input_size} px, classes={self.class_names})"

    def probabilities(self, image: np.ndarray, xyxy: np.ndarray) -> np.ndarray:
        """``(N, classes)`` probabilities for the faces at `xyxy` (pixels) in the RGB uint8 `image`."""
        crops = face_crops(image, xyxy, self.input_size, self.margin).astype(np.float32)
        if not len(crops):
            return np.zeros((0, len(self.class_names)), np.float32)
        with self._lock:
            if len(crops) != self._batch:  # one call for every face of the frame
                self._interpreter.resize_tensor_input(self._input["index"], list(crops.shape))
                self._interpreter.allocate_tensors()
                self._batch = len(crops)
            self._interpreter.set_tensor(self._input["index"], crops)
            self._interpreter.invoke()
            return np.array(self._interpreter.get_tensor(self._output["index"]), np.float32)

    def refine(self, image: np.ndarray, detections: Detections) -> Detections:
        """`detections` with each box's class replaced by the classifier's and its score multiplied by that class's
        probability (boxes and tracks kept; the detector's class and score in ``data["detector_class_id"]`` and
        ``data["detector_confidence"]``)."""
        probabilities = self.probabilities(image, detections.xyxy)
        classes = probabilities.argmax(axis=1)
        return Detections(xyxy=detections.xyxy,
                          confidence=detections.confidence * probabilities[np.arange(len(classes)), classes],
                          class_id=classes, tracker_id=detections.tracker_id,
                          data={**detections.data, "detector_class_id": detections.class_id,
                                "detector_confidence": detections.confidence})


__all__ = ["FaceClassifier", "face_crops"]

"""Run an ONNX export with ONNX Runtime: the SSD network without its post-processing, whose raw outputs are decoded
and suppressed here exactly as the TFLite export's ``TFLite_Detection_PostProcess`` op does (fast NMS: one class
per anchor, class-agnostic greedy NMS), so an ONNX and a TFLite export of one checkpoint give the same detections.

The ONNX file (``maskdetect export RUN --format onnx``, :func:`maskdetect.train.export.export_onnx`) takes the
normalised ``[1, S, S, 3]`` float32 input of the TFLite model and has three outputs: ``box_encodings``
``[1, N, 4]`` (centre-size, scaled), ``class_predictions`` ``[1, N, classes]`` (scores after the score
conversion; a background column first if the model has one) and ``anchors`` ``[N, 4]`` (centre-size: y, x, h,
w). Its ``metadata_props`` hold the class names, the input normalisation and these decoding settings
(:data:`METADATA_KEYS`), so another runtime (TensorRT, OpenVINO) can use the file alone.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from maskdetect.compat import ONNX_INSTALL
from maskdetect.errors import ConfigError

logger = logging.getLogger(__name__)

OUTPUTS = ("box_encodings", "class_predictions", "anchors")
#: The ``metadata_props`` keys of an ONNX export (values are JSON text).
METADATA_KEYS = ("classes", "input", "postprocess")


@dataclass(frozen=True)
class SSDDecoding:
    """What ``TFLite_Detection_PostProcess`` is configured with: the box coder's scales (y, x, h, w), the NMS
    IoU and score thresholds, and the most detections kept."""

    scales: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)
    iou_threshold: float = 0.6
    score_threshold: float = 0.01
    max_detections: int = 100

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "scales": list(self.scales), "nms": "fast (one class per anchor, class-agnostic)"}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str) -> "SSDDecoding":
        try:
            return cls(tuple(float(s) for s in data["scales"]), float(data["iou_threshold"]),  # type: ignore[arg-type]
                       float(data["score_threshold"]), int(data["max_detections"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: malformed post-processing settings ({exc}); export the model again") from exc


def decode_boxes(encodings: np.ndarray, anchors: np.ndarray, scales) -> np.ndarray:
    """Centre-size box encodings ``[N, 4]`` (y, x, h, w) on centre-size anchors -> ``[N, 4]`` corners
    ``(ymin, xmin, ymax, xmax)``, relative to the input, in float32 as the TFLite op computes them."""
    encodings = np.asarray(encodings, np.float32)
    anchors = np.asarray(anchors, np.float32)
    scales = np.asarray(scales, np.float32)
    center = encodings[:, :2] / scales[:2] * anchors[:, 2:] + anchors[:, :2]
    half = np.float32(0.5) * np.exp(encodings[:, 2:] / scales[2:]) * anchors[:, 2:]
    return np.concatenate([center - half, center + half], axis=1)


def fast_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, score_threshold: float,
             max_detections: int) -> np.ndarray:
    """Indices kept by greedy NMS, best first: boxes scoring at least `score_threshold`, in decreasing score
    (stable order for ties), each dropping the later ones that overlap it by more than `iou_threshold` IoU (a box
    with no area overlaps nothing), until `max_detections` are kept."""
    candidates = np.flatnonzero(scores >= score_threshold)
    order = candidates[np.argsort(-scores[candidates], kind="stable")]
    # the candidates not yet kept or suppressed, best first, one contiguous array per coordinate (each pass
    # compresses them: at most max_detections passes, none of which gathers rows)
    ymin, xmin, ymax, xmax = (np.ascontiguousarray(boxes[order, k], np.float32) for k in range(4))
    area = (ymax - ymin) * (xmax - xmin)
    kept: list[int] = []
    while len(order) and len(kept) < max_detections:
        kept.append(int(order[0]))
        if area[0] <= 0:  # a box with no area suppresses nothing
            ymin, xmin, ymax, xmax, area, order = ymin[1:], xmin[1:], ymax[1:], xmax[1:], area[1:], order[1:]
            continue
        high_y, high_x = np.minimum(ymax[1:], ymax[0]), np.minimum(xmax[1:], xmax[0])
        inter = np.maximum(high_y - np.maximum(ymin[1:], ymin[0]), 0) * np.maximum(
            high_x - np.maximum(xmin[1:], xmin[0]), 0)
        union = area[1:] + area[0] - inter
        # IoU > threshold, without dividing: a box with no area has IoU 0
        stay = (inter <= iou_threshold * union) | (area[1:] <= 0)
        ymin, xmin, ymax, xmax, area, order = (a[1:][stay] for a in (ymin, xmin, ymax, xmax, area, order))
    return np.asarray(kept, np.int64)


def postprocess(box_encodings: np.ndarray, class_predictions: np.ndarray, anchors: np.ndarray,
                decoding: SSDDecoding, num_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``TFLite_Detection_PostProcess`` (fast NMS) on one image's raw SSD outputs: ``(boxes [1, M, 4] as
    ymin, xmin, ymax, xmax relative, classes [1, M] 0-based, scores [1, M], count [1])``, the TFLite model's
    four outputs, padded to ``max_detections``. `num_classes`: the classes, without the background column that
    `class_predictions` may have first (models trained with ``add_background_class: false`` have none)."""
    scores_all = np.asarray(class_predictions, np.float32)[0]
    scores_all = scores_all[:, scores_all.shape[1] - num_classes:]  # a background column first, if the model has one
    classes = np.argmax(scores_all, axis=1)
    scores = scores_all[np.arange(len(classes)), classes]
    boxes = decode_boxes(np.asarray(box_encodings)[0], anchors, decoding.scales)
    kept = fast_nms(boxes, scores, decoding.iou_threshold, decoding.score_threshold, decoding.max_detections)
    size = decoding.max_detections
    out_boxes, out_classes, out_scores = (np.zeros((1, size, 4), np.float32), np.zeros((1, size), np.float32),
                                          np.zeros((1, size), np.float32))
    out_boxes[0, :len(kept)], out_classes[0, :len(kept)], out_scores[0, :len(kept)] = (
        boxes[kept], classes[kept], scores[kept])
    return out_boxes, out_classes, out_scores, np.array([len(kept)], np.float32)


class OnnxSSD:
    """An ONNX export loaded in ONNX Runtime (CPU), called like the TFLite interpreter is fed.

    Args:
        path: the ``.onnx`` file.
        num_threads: intra-op threads (the TFLite interpreter's ``num_threads``).

    Attributes:
        input_size: the square input side.
        metadata: the file's ``metadata_props``, JSON values parsed.
        decoding: the post-processing settings from them.

    Raises:
        ConfigError: onnxruntime is not installed (the message names the pip line), or the file is not an
            ONNX export of maskdetect.
    """

    def __init__(self, path: str | os.PathLike, num_threads: int) -> None:
        self.path = Path(path)
        self._session = open_session(self.path, num_threads)
        (inp,) = self._session.get_inputs()
        names = [o.name for o in self._session.get_outputs()]
        shape = inp.shape
        if sorted(names) != sorted(OUTPUTS) or len(shape) != 4 or shape[1] != shape[2] or shape[3] != 3 \
                or not isinstance(shape[1], int):
            raise ConfigError(f"{self.path}: input {shape} and outputs {names} are not those of a maskdetect ONNX "
                              f"export ([1, S, S, 3] in; {', '.join(OUTPUTS)} out); `maskdetect export RUN "
                              "--format onnx` writes one")
        self._input_name = inp.name
        self.input_size = int(shape[1])
        self.metadata = read_metadata(self._session.get_modelmeta().custom_metadata_map, self.path)
        self.decoding = SSDDecoding.from_json(self.metadata["postprocess"], f"{self.path} metadata_props")
        self._anchors: np.ndarray | None = None

    def __call__(self, blob: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The four TFLite-style outputs (see :func:`postprocess`) for one normalised ``[1, S, S, 3]`` input."""
        if self._anchors is None:  # a constant of the file: fetched once
            encodings, predictions, self._anchors = self._session.run(list(OUTPUTS), {self._input_name: blob})
        else:
            encodings, predictions = self._session.run(list(OUTPUTS[:2]), {self._input_name: blob})
        return postprocess(encodings, predictions, self._anchors, self.decoding, len(self.metadata["classes"]))


def open_session(path: Path, num_threads: int = 1):
    """An ONNX Runtime session on the CPU for `path` (`num_threads` intra-op threads).

    Raises:
        ConfigError: onnxruntime is not installed (the message names the pip line) or cannot load the file.
    """
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ConfigError(f"{path}: running ONNX models needs onnxruntime: {ONNX_INSTALL}") from exc
    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: its warnings go to stderr natively
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own types for a broken file
        raise ConfigError(f"{path}: cannot load the ONNX model ({exc})") from exc


def file_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The class names, input spec and decoding settings an ONNX export carries (:func:`read_metadata`)."""
    return read_metadata(open_session(Path(path)).get_modelmeta().custom_metadata_map, path)


def read_metadata(props: Mapping[str, str], where: str | os.PathLike) -> dict[str, Any]:
    """The JSON values of an export's ``metadata_props`` (:data:`METADATA_KEYS`)."""
    missing = [key for key in METADATA_KEYS if key not in props]
    if missing:
        raise ConfigError(f"{where}: no {', '.join(missing)} in the ONNX metadata_props; export it with "
                          "`maskdetect export RUN --format onnx`")
    try:
        return {key: json.loads(props[key]) for key in METADATA_KEYS}
    except ValueError as exc:
        raise ConfigError(f"{where}: malformed ONNX metadata_props ({exc}); export the model again") from exc


__all__ = ["OnnxSSD", "SSDDecoding", "decode_boxes", "fast_nms", "postprocess", "open_session", "file_metadata",
           "read_metadata", "METADATA_KEYS", "OUTPUTS"]

"""The model runtime: load an exported model once and turn images into :class:`Detections`.

:class:`Predictor` opens an export through :class:`~maskdetect.infer.bundle.ExportBundle` (an OD API SavedModel,
a ``.tflite`` file from ``export_tflite_graph_tf2`` + the TFLite converter, or a ``.onnx`` file of the same network
without its post-processing op, run by ONNX Runtime and post-processed as the TFLite op does
(:mod:`maskdetect.infer.onnx_model`); each with its label map, input spec and card), warms it up, and turns images
(a path, a PIL image, or an RGB or BGR ``uint8`` array) into :class:`~maskdetect.detections.Detections` (pixel
``xyxy``, 0-based ``class_id``), post-processed by per-class score thresholds (by default the model's operating
point from its card) and, by default, cross-class NMS (one box per face).

It knows nothing of cameras or outputs: :mod:`maskdetect.infer.sources` gives frames,
:mod:`maskdetect.infer.sinks` writes results and :mod:`maskdetect.infer.loop` runs the one frame loop.

Example:
    >>> predictor = Predictor("workspace/runs/demo/export/saved_model", threshold=0.5)  # doctest: +SKIP
    >>> detections = predictor.predict(rgb_image)                                      # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from maskdetect.detections import Detections
from maskdetect.errors import ConfigError, DataError
from maskdetect.infer.bundle import BUNDLED_MODEL, ExportBundle, Resizer, bundled_model
from maskdetect.infer.classify import FaceClassifier
from maskdetect.infer.tflite import TFLITE_RUNTIMES, tflite_interpreter_class

logger = logging.getLogger(__name__)


#: Defaults of the post-processing (also the CLI's).
DEFAULT_THRESHOLD = 0.5
DEFAULT_NMS_IOU = 0.5

Threshold = float | Mapping[int | str, float]
ImageLike = Any  # a path (str or os.PathLike), a PIL image, or a uint8 (H, W, 3) array


def describe_bundled_model(path: str | os.PathLike) -> str:
    """One line on the model at `path` from its card (:meth:`ExportBundle.describe`)."""
    return ExportBundle.open(path).describe()


def resolve_export(model_path: str | os.PathLike) -> tuple[str, Path]:
    """``(kind, path)`` of the model a path means (:meth:`ExportBundle.open`)."""
    bundle = ExportBundle.open(model_path)
    return bundle.kind, bundle.model


def tflite_input(image: np.ndarray, size: int, scale: np.ndarray, offset: np.ndarray,
                 letterbox: bool) -> tuple[np.ndarray, tuple[float, float]]:
    """The ``[1, size, size, 3]`` float32 input of an exported TFLite model for an RGB image (see
    ``tflite_input.json``), and the ``(width, height)`` in source pixels that its relative boxes refer to."""
    import cv2

    # pixel * scale + offset per channel through a 256-entry table: numpy's float32 result exactly, 2-3x faster
    # than numpy broadcasting over a last axis of 3 (bench/bench_preprocess.py: 0.6-1.8 vs 1.5-3.6 ms a frame)
    table = (np.arange(256, dtype=np.float32)[:, None] * np.asarray(scale, np.float32)
             + np.asarray(offset, np.float32)).reshape(1, 256, 3)
    height, width = image.shape[:2]
    if letterbox:  # longer side to `size`, pad bottom/right with 0 after normalising
        ratio = size / max(width, height)
        new_wh = (max(1, min(size, round(width * ratio))), max(1, min(size, round(height * ratio))))
        resized = cv2.resize(image, new_wh, interpolation=cv2.INTER_LINEAR)
        blob = np.zeros((1, size, size, 3), np.float32)
        blob[0, :new_wh[1], :new_wh[0]] = cv2.LUT(resized, table)
        return blob, (size / ratio, size / ratio)  # the padded square, in source pixels
    resized = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
    return cv2.LUT(resized, table)[None], (width, height)


def legacy_bilinear_resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """`image` resized to ``width x height`` exactly as TensorFlow's v1 ``resize_bilinear`` (``align_corners``
    and ``half_pixel_centers`` False, what the OD API's image resizers call) samples it, to uint8 rounding."""
    import cv2

    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    inverse = np.array([[w / width, 0.0, 0.0], [0.0, h / height, 0.0]])  # source = destination * in/out
    return cv2.warpAffine(image, inverse, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def saved_model_resizer(resizer: Resizer | None) -> Callable[[np.ndarray], np.ndarray] | None:
    """The image resizer of a SavedModel (:attr:`ExportBundle.input`), done before TensorFlow sees the frame:
    a 1080p frame is shrunk to the model's input (as the model itself would: same size, same sampling), so
    the model's own resize becomes the identity and the frame is not copied into TensorFlow at full size.
    Boxes come back relative to the image given, which maps to the frame per axis: coordinates stay exact.
    None when the export has no ``pipeline.config`` or its resizer is not a bilinear fixed-shape or keep-aspect one."""
    if resizer is None or not resizer.bilinear:
        return None
    if resizer.kind == "fixed_shape":
        def resize(image: np.ndarray) -> np.ndarray:
            return legacy_bilinear_resize(image, resizer.width, resizer.height)
        return resize
    smallest, largest = np.float32(resizer.min_dimension), np.float32(resizer.max_dimension)

    def resize_to_range(image: np.ndarray) -> np.ndarray:  # the OD API's resize_to_range, in float32 as TF does it
        h, w = np.float32(image.shape[0]), np.float32(image.shape[1])
        scale = min(smallest / min(h, w), largest / max(h, w))
        if scale >= 1:  # the model enlarges small images itself
            return image
        return legacy_bilinear_resize(image, int(np.round(scale * w)), int(np.round(scale * h)))
    return resize_to_range


def letterboxed(image: np.ndarray, size: int, pad: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """`image` resized (the OD API's bilinear sampling) so its longer side is `size`, then padded bottom/right with
    the pixel `pad` to ``size x size``; and the ``(width, height)`` in source pixels of that padded square."""
    height, width = image.shape[:2]
    ratio = size / max(width, height)
    new_wh = (max(1, min(size, round(width * ratio))), max(1, min(size, round(height * ratio))))
    canvas = np.empty((size, size, 3), np.uint8)
    canvas[:] = pad
    canvas[:new_wh[1], :new_wh[0]] = legacy_bilinear_resize(image, *new_wh)
    return canvas, (size / ratio, size / ratio)


@dataclass
class Speed:
    """Milliseconds per image of the last call, by stage."""

    preprocess_ms: float = 0.0
    inference_ms: float = 0.0
    postprocess_ms: float = 0.0


class Predictor:
    """A loaded, warmed-up detector.

    Args:
        model_path: a model path as :meth:`~maskdetect.infer.bundle.ExportBundle.open` takes it (an export folder,
            a SavedModel folder, a ``.tflite`` file, a run whose ``export/`` holds one), an open
            :class:`~maskdetect.infer.bundle.ExportBundle`, or None: the model bundled with the package.
        class_names: names by 0-based class id; by default the bundle's (its label map).
        threshold: minimum score; one number, or ``{class name or id: score}`` (classes left out use the default).
            None (the default): the model's operating point, chosen on data and recorded on its card by
            ``maskdetect evaluate RUN --export``; a model without one uses `DEFAULT_THRESHOLD`.
        class_thresholds: ``{class name or id: score}`` overriding a numeric `threshold` for those classes.
        cross_class_nms: suppress overlapping boxes of different classes, keeping the most confident.
        nms_iou: IoU above which two boxes are the same face.
        num_threads: TFLite interpreter or ONNX Runtime (intra-op) threads (default: every core).
        tflite_runtime: ``"litert"`` (Google's successor of ``tf.lite``, package ``ai-edge-litert``),
            ``"tf.lite"`` (TensorFlow's deprecated interpreter) or ``"auto"``: LiteRT where it imports, else tf.lite.
        classifier: the second stage (:class:`~maskdetect.infer.classify.FaceClassifier`) that re-classifies each
            kept face from a full-resolution crop: ``"auto"`` (default) uses the ``classifier.tflite`` beside the
            export if there is one, a path uses that one, None none.
        letterbox: frames keep their aspect, padded bottom/right to a square, instead of being squeezed to it;
            None (default): as the bundle says (:attr:`~maskdetect.infer.bundle.InputSpec.letterbox`: what the
            model was trained with, or what ``export(..., letterbox=...)`` recorded, or for frames wider than its
            :attr:`~maskdetect.infer.bundle.InputSpec.letterbox_wider_than` only). True or False decides for every
            frame. Boxes are in frame pixels either way.
        warmup: run one dummy image at load so the first real call is not slow.

    Attributes:
        bundle: the :class:`~maskdetect.infer.bundle.ExportBundle` (model, sidecars, card).
        backend: ``"saved_model"``, ``"tflite"`` or ``"onnx"``.
        runtime: what runs the model: ``"tensorflow"``, ``"litert"``, ``"tf.lite"`` or ``"onnxruntime"`` (CPU).
        classifier: the loaded second stage, or None.
        threshold: the score threshold(s) in force; `threshold_source` says where it came from.
        input_size: square input side of the TFLite or ONNX model (None for SavedModel: it is given the frame already
            shrunk by its own resizer, :func:`saved_model_resizer`, read from the ``pipeline.config`` beside it).
        letterbox: every frame is letterboxed, not squeezed.
        letterbox_wider_than: without `letterbox`, frames whose longer side exceeds this many times the shorter are
            letterboxed (None: none); :meth:`letterboxes` decides per frame.
        speed: :class:`Speed` of the last :meth:`predict`.

    Example:
        >>> p = Predictor("runs/demo/export/model.tflite", threshold={"without_mask": 0.3})  # doctest: +SKIP
        >>> for detections in p.predict_stream(frames): ...                            # doctest: +SKIP
    """

    def __init__(self, model_path: str | os.PathLike | ExportBundle | None = None, *,
                 class_names: Sequence[str] | None = None, threshold: Threshold | None = None,
                 class_thresholds: Mapping[int | str, float] | None = None, cross_class_nms: bool = True,
                 nms_iou: float = DEFAULT_NMS_IOU, num_threads: int | None = None, tflite_runtime: str = "auto",
                 classifier: str | os.PathLike | None = "auto", letterbox: bool | None = None,
                 warmup: bool = True) -> None:
        self.bundle = ExportBundle.open(model_path)
        if model_path is None:
            logger.info("model: the bundled default, %s", self.bundle.describe())
        self.backend, self.model_path = self.bundle.kind, self.bundle.model
        self.class_names = list(class_names) if class_names is not None else list(self.bundle.class_names)
        if not 0.0 < nms_iou <= 1.0:
            raise ConfigError(f"nms_iou={nms_iou}: must be in (0, 1]")
        self.cross_class_nms, self.nms_iou = cross_class_nms, nms_iou
        if tflite_runtime not in TFLITE_RUNTIMES:
            raise ConfigError(f"tflite_runtime={tflite_runtime!r}: choose from {', '.join(TFLITE_RUNTIMES)}")
        if num_threads is not None and num_threads < 1:
            raise ConfigError(f"num_threads={num_threads}: must be at least 1")
        self.num_threads = num_threads or os.cpu_count() or 1
        self.runtime = "tensorflow"
        self.input_size: int | None = None
        spec = self.bundle.input
        self.letterbox = spec.letterbox if letterbox is None else bool(letterbox)
        # frames far wider than square letterboxed, the others squeezed (InputSpec.letterboxes); an explicit
        # `letterbox` decides for every frame
        self.letterbox_wider_than = spec.letterbox_wider_than if letterbox is None else None
        self._scale = np.asarray(spec.scale, np.float32)
        self._offset = np.asarray(spec.offset, np.float32)
        self.speed = Speed()
        self._lock = threading.Lock()
        started = time.perf_counter()
        if self.backend == "saved_model":
            self._load_saved_model()
        elif self.backend == "onnx":
            self._load_onnx()
        else:
            self._load_tflite(tflite_runtime)
        logger.info("loaded %s model %s with %s in %.1f s", self.backend, self.model_path, self.runtime,
                    time.perf_counter() - started)
        self.classifier = self._load_classifier(classifier, tflite_runtime)
        self.threshold, self.threshold_source = self._default_threshold(threshold, class_thresholds)
        if warmup:
            self.predict_raw(np.zeros((self.input_size or 256, self.input_size or 256, 3), np.uint8))

    def __repr__(self) -> str:
        return f"Predictor({str(self.model_path)!r}, backend={self.backend!r}, classes={self.class_names})"

    def _default_threshold(self, threshold: Threshold | None, class_thresholds: Mapping[int | str, float] | None
                           ) -> tuple[float | dict[int, float], str]:
        """The thresholds in force and where they came from: given, the card's operating point, or the default."""
        source = "given"
        if threshold is None:
            point = self.bundle.operating_point_for(self.classifier is not None)
            threshold, source = ((point.threshold, f"the model's operating point ({point.rule})") if point else
                                 (DEFAULT_THRESHOLD, "the default"))
            logger.info("score threshold %.3g: %s", threshold, source)
        if class_thresholds:
            if isinstance(threshold, Mapping):
                raise ConfigError("give per-class thresholds either in `threshold` or in `class_thresholds`")
            base = float(threshold)
            threshold = {**{i: base for i in range(len(self.class_names))}, **class_thresholds}
        return self._resolve_threshold(threshold), source

    def _load_classifier(self, classifier: str | os.PathLike | None, runtime: str) -> FaceClassifier | None:
        if classifier is None or str(classifier) == "none":
            return None
        path = self.bundle.classifier if str(classifier) == "auto" else Path(classifier)
        if path is None:
            return None
        loaded = FaceClassifier(path, num_threads=self.num_threads, tflite_runtime=runtime)
        if loaded.class_names != self.class_names:
            raise ConfigError(f"{path}: classes {loaded.class_names} differ from the detector's {self.class_names}; "
                              "train the classifier on the detector's run (`maskdetect classifier RUN`)")
        logger.info("classes from the second stage %s (%d px crops)", path, loaded.input_size)
        return loaded

    # -- loading ------------------------------------------------------------------------------------------
    def _load_saved_model(self) -> None:
        import tensorflow as tf

        try:
            model = tf.saved_model.load(str(self.model_path))
        except Exception as exc:  # TF raises many types for a broken export
            raise ConfigError(f"{self.model_path}: cannot load the SavedModel ({exc})") from exc
        if "serving_default" not in model.signatures:
            raise ConfigError(f"{self.model_path}: the SavedModel has no serving_default signature; export it "
                              "with the OD API exporter (input_type image_tensor)")
        self._model = model  # keep the variables alive
        self._signature = model.signatures["serving_default"]
        self._tf = tf
        self._resizer = self.bundle.input.resizer
        self._resize = saved_model_resizer(self._resizer)
        if self._resize is None:
            logger.info("no pipeline.config with a bilinear resizer beside %s: frames go to the SavedModel at "
                        "full size", self.model_path)
        if (self.letterbox or self.letterbox_wider_than) != bool(self._resizer and self._resizer.letterboxes) and (
                self._resize is None or self.bundle.input.size is None):
            raise ConfigError(f"{self.model_path}: letterbox={self.letterbox} needs the model's resizer, which is "
                              "read from the pipeline.config beside it; export the model again")
        # the pixel whose normalised value is 0: what the OD API pads a letterbox with after normalising
        self._pad = np.clip(np.round(-self._offset / self._scale), 0, 255).astype(np.uint8)

    def _load_tflite(self, runtime: str) -> None:
        self.runtime, interpreter_class = tflite_interpreter_class(runtime)
        try:
            interpreter = interpreter_class(model_path=str(self.model_path), num_threads=self.num_threads)
            interpreter.allocate_tensors()
        except Exception as exc:
            raise ConfigError(f"{self.model_path}: cannot load the TFLite model ({exc})") from exc
        (inp,) = interpreter.get_input_details()
        shape = inp["shape"]
        if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 3:
            raise ConfigError(f"{self.model_path}: input shape {list(shape)} is not [1, S, S, 3]; export with "
                              "export_tflite_graph_tf2 (fixed-shape resizer)")
        self._interpreter = interpreter
        self._input = inp
        self._outputs = tflite_output_indices(interpreter.get_output_details())
        self.input_size = int(shape[1])
        self._outputs_checked = False
        self._check_input_size()

    def _load_onnx(self) -> None:
        from maskdetect.infer.onnx_model import OnnxSSD

        self._onnx = OnnxSSD(self.model_path, self.num_threads)
        self.runtime, self.input_size = "onnxruntime", self._onnx.input_size
        self._check_input_size()

    def _check_input_size(self) -> None:
        recorded = self.bundle.input.size
        if recorded is not None and recorded != self.input_size:
            raise ConfigError(f"{self.bundle.input_spec_path}: input_size {recorded} but the model takes "
                              f"{self.input_size}; export the {self.backend} model again")

    def _check_tflite_outputs(self, classes: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """On the first call, make sure the ``[1, N]`` outputs were told apart right: class ids are whole
        numbers; if only the "scores" are, the two were swapped."""
        self._outputs_checked = True
        whole = lambda a: bool(np.all(np.asarray(a) == np.round(a)))  # noqa: E731
        if not whole(classes) and whole(scores):
            logger.debug("TFLite outputs: classes and scores swapped by value check")
            self._outputs["classes"], self._outputs["scores"] = self._outputs["scores"], self._outputs["classes"]
            return scores, classes
        return classes, scores

    def _resolve_threshold(self, threshold: Threshold) -> float | dict[int, float]:
        if not isinstance(threshold, Mapping):
            value = float(threshold)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"threshold={threshold}: must be in [0, 1]")
            return value
        limits = {i: DEFAULT_THRESHOLD for i in range(len(self.class_names))}
        for key, value in threshold.items():
            if isinstance(key, str) and not key.isdigit():
                if key not in self.class_names:
                    raise ConfigError(f"threshold for unknown class {key!r}; classes are {self.class_names}")
                key = self.class_names.index(key)
            key = int(key)
            if not 0 <= key < len(self.class_names):
                raise ConfigError(f"threshold for class id {key}; ids are 0..{len(self.class_names) - 1}")
            if not 0.0 <= float(value) <= 1.0:
                raise ConfigError(f"threshold {value} for {self.class_names[key]}: must be in [0, 1]")
            limits[key] = float(value)
        return limits

    # -- prediction ---------------------------------------------------------------------------------------
    def letterboxes(self, width: int, height: int) -> bool:
        """Whether a frame of this size is letterboxed (see :attr:`letterbox`, :attr:`letterbox_wider_than`)."""
        return self.letterbox or (self.letterbox_wider_than is not None
                                  and max(width, height) > self.letterbox_wider_than * min(width, height))

    def _saved_model_input(self, image: np.ndarray, letterbox: bool) -> tuple[np.ndarray, tuple[float, float]]:
        """What the SavedModel is given for an RGB frame, and the frame-pixel size its relative boxes refer to."""
        height, width = image.shape[:2]
        resizer = self._resizer
        if letterbox and not (resizer and resizer.letterboxes):  # a square of the model's input, as the TFLite path does
            return letterboxed(image, self.bundle.input.size, self._pad)
        if not letterbox and resizer is not None and resizer.letterboxes:  # squeezed to the square
            size = self.bundle.input.size
            return legacy_bilinear_resize(image, size, size), (width, height)
        return (self._resize(image) if self._resize else image), (width, height)

    def predict_raw(self, image: ImageLike, *, order: str = "rgb") -> Detections:
        """Everything the model returned for one image (no threshold, no cross-class NMS); see :meth:`predict`."""
        image = as_rgb(image, order)
        height, width = image.shape[:2]
        letterbox = self.letterboxes(width, height)
        t0 = time.perf_counter()
        if self.backend == "saved_model":
            given, box_frame_wh = self._saved_model_input(image, letterbox)
            tensor = self._tf.convert_to_tensor(given[None])
            t1 = time.perf_counter()
            outputs = self._signature(input_tensor=tensor)
            outputs = {k: outputs[k].numpy() for k in ("detection_boxes", "detection_classes",
                                                       "detection_scores", "num_detections")}
            t2 = time.perf_counter()
            detections = Detections.from_saved_model(outputs, box_frame_wh)
        else:  # TFLite and ONNX: the same input, the same four outputs (ONNX's post-processing op done in numpy)
            blob, box_frame_wh = tflite_input(image, self.input_size, self._scale, self._offset, letterbox)
            t1 = time.perf_counter()
            boxes, classes, scores, count = self._onnx(blob) if self.backend == "onnx" else self._invoke_tflite(blob)
            t2 = time.perf_counter()
            detections = Detections.from_tflite(boxes, classes, scores, count, box_frame_wh)
        if letterbox and len(detections):  # boxes reaching into the pad end at the frame's edge
            xyxy = np.minimum(detections.xyxy, np.array([width, height, width, height], np.float32))
            detections = Detections(xyxy=xyxy, confidence=detections.confidence, class_id=detections.class_id)
        if len(detections) and int(detections.class_id.max()) >= len(self.class_names):
            raise DataError(f"the model predicted class id {int(detections.class_id.max())} but only "
                            f"{len(self.class_names)} class names are known ({self.class_names}); use the label "
                            "map the model was trained with (label_map.pbtxt beside the export)")
        self.speed = Speed(preprocess_ms=(t1 - t0) * 1e3, inference_ms=(t2 - t1) * 1e3)
        return detections

    def _invoke_tflite(self, blob: np.ndarray) -> tuple[np.ndarray, ...]:
        """``(boxes, classes, scores, count)`` of the TFLite model for one input."""
        with self._lock:  # one interpreter, one call at a time
            self._interpreter.set_tensor(self._input["index"], blob)
            self._interpreter.invoke()
            get = self._interpreter.get_tensor
            boxes, classes, scores, count = (get(self._outputs[k]) for k in ("boxes", "classes", "scores", "count"))
            if not self._outputs_checked:
                classes, scores = self._check_tflite_outputs(classes, scores)
        return boxes, classes, scores, count

    def postprocess(self, detections: Detections, image: np.ndarray | None = None) -> Detections:
        """Apply the score thresholds, then (if enabled) cross-class NMS. With a second stage (`image` needed, RGB),
        the faces whose detector score passes the lowest threshold are kept, merged by NMS and re-classified, and
        then the thresholds of their new classes apply to their new scores (detector score x class probability,
        never above the detector's: the pre-filter drops nothing that could pass)."""
        if self.classifier is None:
            detections = detections.with_threshold(self.threshold)
            return detections.with_cross_class_nms(self.nms_iou) if self.cross_class_nms else detections
        if image is None:
            raise ValueError("postprocess with a classifier needs the image")
        lowest = min(self.threshold.values()) if isinstance(self.threshold, Mapping) else self.threshold
        detections = detections.with_threshold(lowest)
        if self.cross_class_nms:
            detections = detections.with_cross_class_nms(self.nms_iou)
        return self.classifier.refine(image, detections).with_threshold(self.threshold)

    def predict(self, image: ImageLike, *, order: str = "rgb") -> Detections:
        """Detections in one image, in its pixel coordinates.

        Args:
            image: an image file's path (read as the file says, EXIF orientation applied), a PIL image (any mode
                converted to RGB), or a ``uint8`` array ``(H, W, 3)``.
            order: the channel order of an array: ``"rgb"`` (default; what every maskdetect source gives, and
                PIL/imageio/matplotlib) or ``"bgr"`` (what ``cv2.imread`` and ``cv2.VideoCapture`` give). Not
                used for paths and PIL images, whose order is known; anything but an array with it is refused.
        """
        image = as_rgb(image, order)
        raw = self.predict_raw(image)
        t0 = time.perf_counter()
        detections = self.postprocess(raw, image)
        self.speed.postprocess_ms = (time.perf_counter() - t0) * 1e3
        detections.class_names = tuple(self.class_names)
        return detections

    def predict_batch(self, images: Sequence[ImageLike], *, order: str = "rgb") -> list[Detections]:
        """One `Detections` per image (the exported models take one image per call; sizes may differ)."""
        return [self.predict(image, order=order) for image in images]

    def predict_stream(self, frames: Iterable[ImageLike], *, order: str = "rgb") -> Iterator[Detections]:
        """Lazily yield one `Detections` per frame of any iterable (a generator of video frames, ...)."""
        for frame in frames:
            yield self.predict(frame, order=order)


def tflite_output_indices(details: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Tensor indices of the SSD post-processing outputs ``boxes``, ``classes``, ``scores``, ``count``.

    Found by name when the names say it (``detection_boxes`` ..., or ``TFLite_Detection_PostProcess:1..3``),
    else by shape: boxes ``[1, N, 4]``, count ``[1]``, and of the two ``[1, N]`` tensors the classes come first
    (the order ``TFLite_Detection_PostProcess`` emits them).
    """
    if len(details) != 4:
        raise ConfigError(f"the TFLite model has {len(details)} outputs, not the 4 of SSD post-processing; "
                          "export it with export_tflite_graph_tf2")
    keys = {"boxes": ("detection_boxes", "boxes"), "classes": ("detection_classes", "classes"),
            "scores": ("detection_scores", "scores"), "count": ("num_detections", "count")}
    found: dict[str, int] = {}
    for key, names in keys.items():
        for d in details:
            name = d["name"].lower()
            if any(name == n or name.endswith("/" + n) or name.endswith(n + ":0") for n in names):
                found[key] = d["index"]
    if len(found) == 4 and len(set(found.values())) == 4:
        return found
    post = {d["name"].rsplit(":", 1)[-1]: d["index"] for d in details if "TFLite_Detection_PostProcess" in d["name"]}
    if len(post) == 4 and set(post) == {"TFLite_Detection_PostProcess", "1", "2", "3"}:
        return {"boxes": post["TFLite_Detection_PostProcess"], "classes": post["1"], "scores": post["2"],
                "count": post["3"]}
    by_rank: dict[int, list[Mapping[str, Any]]] = {}
    for d in details:
        by_rank.setdefault(len(d["shape"]), []).append(d)
    boxes = [d for d in by_rank.get(3, []) if d["shape"][-1] == 4]
    pairs = sorted(by_rank.get(2, []), key=lambda d: d["index"])
    counts = by_rank.get(1, [])
    if len(boxes) == 1 and len(pairs) == 2 and len(counts) == 1:
        pairs = _order_class_score(pairs)
        return {"boxes": boxes[0]["index"], "classes": pairs[0]["index"], "scores": pairs[1]["index"],
                "count": counts[0]["index"]}
    raise ConfigError("cannot tell the TFLite outputs apart: " + ", ".join(
        f"{d['name']} {list(d['shape'])}" for d in details))


def _order_class_score(pairs: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """``[classes, scores]`` from two ``[1, N]`` outputs: by name if one says so, else in tensor order."""
    for i, d in enumerate(pairs):
        name = d["name"].lower()
        if "score" in name:
            return [pairs[1 - i], d]
        if "class" in name:
            return [d, pairs[1 - i]]
    return pairs


COLOR_ORDERS = ("rgb", "bgr")


def as_rgb(image: ImageLike, order: str = "rgb") -> np.ndarray:
    """An RGB ``uint8`` ``(H, W, 3)`` array from a path, a PIL image or an array in channel `order`.

    A path and a PIL image carry their channel order, so `order` must be left at ``"rgb"`` for them (a ``"bgr"``
    there is a mistake about what is passed, and refused). Arrays with an alpha channel, one channel, or
    another dtype are refused with the conversion to make: guessing would silently change the result.

    Raises:
        DataError: the image is not one of those, or cannot be read.
    """
    if order not in COLOR_ORDERS:
        raise DataError(f"order={order!r}: an array's channel order is 'rgb' or 'bgr' (cv2.imread gives bgr)")
    if isinstance(image, (str, os.PathLike)):
        if order != "rgb":
            raise DataError(f"{image}: a path is read in its own colour order; drop order={order!r}")
        from maskdetect.media import read_image

        return read_image(image)
    if not isinstance(image, np.ndarray) and hasattr(image, "convert") and hasattr(image, "mode"):  # PIL
        if order != "rgb":
            raise DataError(f"a PIL image ({image.mode}) carries its colour order; drop order={order!r}")
        return np.asarray(image.convert("RGB"))
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or min(image.shape[:2]) < 1:
        hint = (" (4 channels: drop the alpha, e.g. image[..., :3])" if image.ndim == 3 and image.shape[2] == 4 else
                " (scale floats to 0-255 and cast: (image * 255).astype(np.uint8))" if image.dtype.kind == "f" else
                " (one channel: stack it to 3, e.g. np.dstack([image] * 3))" if image.ndim == 2 else "")
        raise DataError(f"expected an RGB or BGR uint8 image of shape (H, W, 3), got {image.shape} "
                        f"{image.dtype}{hint}")
    return image[..., ::-1] if order == "bgr" else image


__all__ = ["Predictor", "Speed", "as_rgb", "resolve_export", "tflite_output_indices", "bundled_model",
           "BUNDLED_MODEL", "DEFAULT_THRESHOLD", "DEFAULT_NMS_IOU"]

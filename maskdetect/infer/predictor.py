"""The model runtime: load an exported model once and turn RGB images into :class:`Detections`.

:class:`Predictor` loads an export once (an OD API SavedModel directory, or a ``.tflite`` file from
``export_tflite_graph_tf2`` + the TFLite converter), warms it up, and turns RGB ``uint8`` images into
:class:`~maskdetect.detections.Detections` (pixel ``xyxy``, 0-based ``class_id``), post-processed by
per-class score thresholds and, by default, cross-class NMS (one box per face).

It knows nothing of files, cameras or outputs: :mod:`maskdetect.infer.sources` gives frames,
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

import maskdetect
from maskdetect.detections import Detections
from maskdetect.errors import ConfigError, DataError
from maskdetect.infer.classify import CLASSIFIER_NAME, FaceClassifier, find_classifier
from maskdetect.infer.tflite import TFLITE_RUNTIMES, tflite_interpreter_class
from maskdetect.labelmap import find_label_map, read_label_map

logger = logging.getLogger(__name__)


#: Defaults of the post-processing (also the CLI's).
DEFAULT_THRESHOLD = 0.5
DEFAULT_NMS_IOU = 0.5

Threshold = float | Mapping[int | str, float]


BUNDLED_MODEL = Path(__file__).resolve().parents[1] / "models" / "default"


def bundled_model() -> Path:
    """The model shipped with the package (``maskdetect/models/default``: a TFLite model, its label map,
    ``tflite_input.json`` and model card, and the second stage ``classifier.tflite``), used when no model is
    given."""
    tflites = sorted(p for p in BUNDLED_MODEL.glob("*.tflite") if p.name != CLASSIFIER_NAME)
    if len(tflites) != 1:
        raise ConfigError(f"{BUNDLED_MODEL}: no bundled model in this install; pass an export (--model)")
    return tflites[0]


def describe_bundled_model(path: Path) -> str:
    """One line on the bundled model `path` from its card: architecture, input, precision, validation figures."""
    import json

    card_path = path.with_name(path.stem + ".card.json")
    if not card_path.is_file():
        return str(path)
    card = json.loads(card_path.read_text(encoding="utf-8"))
    measured = card.get("measured", {})
    val, both = measured.get("val", {}), measured.get("val_with_classifier", {})
    figures = f", val mAP@0.5 {val['mAP@0.5']:.2f}" if val.get("mAP@0.5") is not None else ""
    if figures and both.get("mAP@0.5") is not None:
        figures += f" alone, {both['mAP@0.5']:.2f} with its second stage"
    return (f"{path} ({card.get('feature_extractor', '?')}, {card.get('input_size', '?')} px, "
            f"{card.get('precision', '?')}{figures}; card: {card_path.name})")


def resolve_export(model_path: str | os.PathLike) -> tuple[str, Path]:
    """``("saved_model" | "tflite", path)`` for an export path: a SavedModel dir, an OD API export dir that
    holds ``saved_model/``, a ``.tflite`` file, a dir holding exactly one ``.tflite`` file, or a run directory
    (a :class:`~maskdetect.train.run.Run`) holding ``export/``."""
    path = Path(model_path)
    if path.is_file():
        if path.suffix == ".tflite":
            return "tflite", path
        if path.name == "saved_model.pb":
            return "saved_model", path.parent
    elif path.is_dir():
        if (path / "saved_model.pb").is_file():
            return "saved_model", path
        if (path / "saved_model" / "saved_model.pb").is_file():
            return "saved_model", path / "saved_model"
        tflites = sorted(p for p in path.glob("*.tflite") if p.name != CLASSIFIER_NAME)
        if len(tflites) == 1:
            return "tflite", tflites[0]
        if (path / "export").is_dir() and (path / "pipeline.config").is_file():
            return resolve_export(path / "export")
    raise ConfigError(f"{path}: not a model export. Pass an exported SavedModel directory (holding "
                      "saved_model.pb, e.g. workspace/runs/NAME/export/saved_model) or a .tflite file.")


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


def saved_model_resizer(pipeline_config: Path) -> Callable[[np.ndarray], np.ndarray] | None:
    """The image resizer of the export whose ``pipeline.config`` this is, done before TensorFlow sees the frame:
    a 1080p frame is shrunk to the model's input (as the model itself would: same size, same sampling), so
    the model's own resize becomes the identity and the frame is not copied into TensorFlow at full size.
    Boxes come back relative to the image given, which maps to the frame per axis: coordinates stay exact.
    None when there is no config beside the export or its resizer is not a fixed-shape or keep-aspect one."""
    if not pipeline_config.is_file():
        return None
    from object_detection.protos.image_resizer_pb2 import BILINEAR

    from maskdetect.train.run import load_pipeline

    resizer = load_pipeline(pipeline_config).model.ssd.image_resizer
    kind = resizer.WhichOneof("image_resizer_oneof")
    if kind == "fixed_shape_resizer":
        fixed = resizer.fixed_shape_resizer
        if fixed.convert_to_grayscale or fixed.resize_method != BILINEAR:
            return None

        def resize(image: np.ndarray) -> np.ndarray:
            return legacy_bilinear_resize(image, fixed.width, fixed.height)
    elif kind == "keep_aspect_ratio_resizer":
        keep = resizer.keep_aspect_ratio_resizer
        if keep.resize_method != BILINEAR or keep.convert_to_grayscale:
            return None
        smallest, largest = np.float32(keep.min_dimension), np.float32(keep.max_dimension)

        def resize(image: np.ndarray) -> np.ndarray:  # the OD API's resize_to_range, in float32 as TF does it
            h, w = np.float32(image.shape[0]), np.float32(image.shape[1])
            scale = min(smallest / min(h, w), largest / max(h, w))
            if scale >= 1:  # the model enlarges small images itself
                return image
            return legacy_bilinear_resize(image, int(np.round(scale * w)), int(np.round(scale * h)))
    else:
        return None
    return resize


@dataclass
class Speed:
    """Milliseconds per image of the last call, by stage."""

    preprocess_ms: float = 0.0
    inference_ms: float = 0.0
    postprocess_ms: float = 0.0


class Predictor:
    """A loaded, warmed-up detector.

    Args:
        model_path: exported SavedModel directory, its parent export directory, a ``.tflite`` file, or a run
            (directory) whose ``export/`` holds one; None: the model bundled with the package
            (:func:`bundled_model`).
        class_names: names by 0-based class id; by default read from the label map found beside the export
            (:func:`maskdetect.labelmap.find_label_map`), else ``maskdetect.CLASSES``.
        threshold: minimum score; one number, or ``{class name or id: score}`` (classes left out use
            `DEFAULT_THRESHOLD`).
        class_thresholds: ``{class name or id: score}`` overriding a numeric `threshold` for those classes.
        cross_class_nms: suppress overlapping boxes of different classes, keeping the most confident.
        nms_iou: IoU above which two boxes are the same face.
        num_threads: TFLite interpreter threads (default: every core).
        tflite_runtime: ``"litert"`` (Google's successor of ``tf.lite``, package ``ai-edge-litert``),
            ``"tf.lite"`` (TensorFlow's deprecated interpreter) or ``"auto"``: LiteRT where it imports, else tf.lite.
        classifier: the second stage (:class:`~maskdetect.infer.classify.FaceClassifier`) that re-classifies each
            kept face from a full-resolution crop: ``"auto"`` (default) uses the ``classifier.tflite`` beside the
            export if there is one, a path uses that one, None none.
        warmup: run one dummy image at load so the first real call is not slow.

    Attributes:
        backend: ``"saved_model"`` or ``"tflite"``.
        runtime: what runs the model: ``"tensorflow"``, ``"litert"`` or ``"tf.lite"``.
        classifier: the loaded second stage, or None.
        input_size: square input side of the TFLite model (None for SavedModel: it is given the frame already
            shrunk by its own resizer, :func:`saved_model_resizer`, read from the ``pipeline.config`` beside it).
        letterbox: TFLite only: frames are letterboxed, not stretched (``tflite_input.json`` beside the model,
            written by ``maskdetect.train.export``, gives this and the input normalisation; without it, pixels are
            scaled to [-1, 1] and stretched to the square input).
        speed: :class:`Speed` of the last :meth:`predict`.

    Example:
        >>> p = Predictor("runs/demo/export/model.tflite", threshold={"without_mask": 0.3})  # doctest: +SKIP
        >>> for detections in p.predict_stream(frames): ...                            # doctest: +SKIP
    """

    def __init__(self, model_path: str | os.PathLike | None = None, *, class_names: Sequence[str] | None = None,
                 threshold: Threshold = DEFAULT_THRESHOLD,
                 class_thresholds: Mapping[int | str, float] | None = None, cross_class_nms: bool = True,
                 nms_iou: float = DEFAULT_NMS_IOU, num_threads: int | None = None, tflite_runtime: str = "auto",
                 classifier: str | os.PathLike | None = "auto", warmup: bool = True) -> None:
        if model_path is None:
            model_path = bundled_model()
            logger.info("model: the bundled default, %s", describe_bundled_model(model_path))
        self.backend, self.model_path = resolve_export(model_path)
        if class_names is None:
            label_map = find_label_map(self.model_path)
            if label_map is not None:
                class_names = read_label_map(label_map)
                logger.debug("class names from %s: %s", label_map, class_names)
            else:
                logger.warning("no label_map.pbtxt beside %s; using the default classes %s", self.model_path,
                               ", ".join(maskdetect.CLASSES))
                class_names = maskdetect.CLASSES
        self.class_names = list(class_names)
        if class_thresholds:
            if isinstance(threshold, Mapping):
                raise ConfigError("give per-class thresholds either in `threshold` or in `class_thresholds`")
            base = float(threshold)
            threshold = {**{i: base for i in range(len(self.class_names))}, **class_thresholds}
        self.threshold = self._resolve_threshold(threshold)
        self.cross_class_nms = cross_class_nms
        if not 0.0 < nms_iou <= 1.0:
            raise ConfigError(f"nms_iou={nms_iou}: must be in (0, 1]")
        self.nms_iou = nms_iou
        if tflite_runtime not in TFLITE_RUNTIMES:
            raise ConfigError(f"tflite_runtime={tflite_runtime!r}: choose from {', '.join(TFLITE_RUNTIMES)}")
        if num_threads is not None and num_threads < 1:
            raise ConfigError(f"num_threads={num_threads}: must be at least 1")
        self.num_threads = num_threads or os.cpu_count() or 1
        self.runtime = "tensorflow"
        self.input_size: int | None = None
        self.speed = Speed()
        self._lock = threading.Lock()
        started = time.perf_counter()
        if self.backend == "saved_model":
            self._load_saved_model()
        else:
            self._load_tflite(tflite_runtime)
        logger.info("loaded %s model %s with %s in %.1f s", self.backend, self.model_path, self.runtime,
                    time.perf_counter() - started)
        self.classifier = self._load_classifier(classifier, tflite_runtime)
        if warmup:
            self.predict_raw(np.zeros((self.input_size or 256, self.input_size or 256, 3), np.uint8))

    def __repr__(self) -> str:
        return f"Predictor({str(self.model_path)!r}, backend={self.backend!r}, classes={self.class_names})"

    def _load_classifier(self, classifier: str | os.PathLike | None, runtime: str) -> FaceClassifier | None:
        if classifier is None or str(classifier) == "none":
            return None
        path = find_classifier(self.model_path) if str(classifier) == "auto" else Path(classifier)
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
        self._resize = saved_model_resizer(self.model_path.parent / "pipeline.config")
        if self._resize is None:
            logger.info("no pipeline.config with a bilinear resizer beside %s: frames go to the SavedModel at "
                        "full size", self.model_path)

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
        self._scale = np.full(3, 2.0 / 255.0, np.float32)
        self._offset = np.full(3, -1.0, np.float32)
        self.letterbox = False
        spec_path = self.model_path.with_name("tflite_input.json")
        if spec_path.is_file():  # written by maskdetect.train.export: the model's own normalisation and resizing
            import json

            try:
                spec = json.loads(spec_path.read_text(encoding="utf-8"))
                self._scale = np.asarray(spec["scale"], np.float32).reshape(3)
                self._offset = np.asarray(spec["offset"], np.float32).reshape(3)
                self.letterbox = bool(spec.get("letterbox", False))
                if int(spec.get("input_size", self.input_size)) != self.input_size:
                    raise ValueError(f"input_size {spec['input_size']} but the model takes {self.input_size}")
            except (ValueError, KeyError, TypeError) as exc:
                raise ConfigError(f"{spec_path}: malformed ({exc}); re-export the TFLite model") from exc
        else:
            logger.info("no tflite_input.json beside %s: feeding pixels scaled to [-1, 1], resized to %dx%d",
                        self.model_path, self.input_size, self.input_size)

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
    def predict_raw(self, image: np.ndarray) -> Detections:
        """Everything the model returned for one RGB image (no threshold, no cross-class NMS)."""
        image = _check_image(image)
        height, width = image.shape[:2]
        t0 = time.perf_counter()
        if self.backend == "saved_model":
            tensor = self._tf.convert_to_tensor((self._resize(image) if self._resize else image)[None])
            t1 = time.perf_counter()
            outputs = self._signature(input_tensor=tensor)
            outputs = {k: outputs[k].numpy() for k in ("detection_boxes", "detection_classes",
                                                       "detection_scores", "num_detections")}
            t2 = time.perf_counter()
            detections = Detections.from_saved_model(outputs, (width, height))
        else:
            blob, box_frame_wh = tflite_input(image, self.input_size, self._scale, self._offset, self.letterbox)
            t1 = time.perf_counter()
            with self._lock:  # one interpreter, one call at a time
                self._interpreter.set_tensor(self._input["index"], blob)
                self._interpreter.invoke()
                get = self._interpreter.get_tensor
                boxes, classes, scores, count = (get(self._outputs[k]) for k in
                                                 ("boxes", "classes", "scores", "count"))
                if not self._outputs_checked:
                    classes, scores = self._check_tflite_outputs(classes, scores)
            t2 = time.perf_counter()
            detections = Detections.from_tflite(boxes, classes, scores, count, box_frame_wh)
            if self.letterbox and len(detections):
                xyxy = np.minimum(detections.xyxy, np.array([width, height, width, height], np.float32))
                detections = Detections(xyxy=xyxy, confidence=detections.confidence, class_id=detections.class_id)
        if len(detections) and int(detections.class_id.max()) >= len(self.class_names):
            raise DataError(f"the model predicted class id {int(detections.class_id.max())} but only "
                            f"{len(self.class_names)} class names are known ({self.class_names}); use the label "
                            "map the model was trained with (label_map.pbtxt beside the export)")
        self.speed = Speed(preprocess_ms=(t1 - t0) * 1e3, inference_ms=(t2 - t1) * 1e3)
        return detections

    def postprocess(self, detections: Detections, image: np.ndarray | None = None) -> Detections:
        """Apply the score thresholds, then (if enabled) cross-class NMS. With a second stage (`image` needed),
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

    def predict(self, image: np.ndarray) -> Detections:
        """Detections in one RGB ``uint8`` image ``(H, W, 3)``, in its pixel coordinates."""
        raw = self.predict_raw(image)
        t0 = time.perf_counter()
        detections = self.postprocess(raw, image)
        self.speed.postprocess_ms = (time.perf_counter() - t0) * 1e3
        return detections

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """One `Detections` per image (the exported models take one image per call; sizes may differ)."""
        return [self.predict(image) for image in images]

    def predict_stream(self, frames: Iterable[np.ndarray]) -> Iterator[Detections]:
        """Lazily yield one `Detections` per frame of any iterable (a generator of video frames, ...)."""
        for frame in frames:
            yield self.predict(frame)


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


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or min(image.shape[:2]) < 1:
        raise DataError(f"expected an RGB uint8 image of shape (H, W, 3), got {image.shape} {image.dtype}")
    return image


__all__ = ["Predictor", "Speed", "resolve_export", "tflite_output_indices", "DEFAULT_THRESHOLD",
           "DEFAULT_NMS_IOU"]

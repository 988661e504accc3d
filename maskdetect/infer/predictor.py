"""Run an exported model on images, batches, frame streams, folders, video files and live streams.

:class:`Predictor` loads an export once (an OD API SavedModel directory, or a ``.tflite`` file from
``export_tflite_graph_tf2`` + the TFLite converter), warms it up, and turns RGB ``uint8`` images into
:class:`~maskdetect.detections.Detections` (pixel ``xyxy``, 0-based ``class_id``), post-processed by
per-class score thresholds and, by default, cross-class NMS (one box per face).

:func:`predict_source` is what ``maskdetect predict`` runs: it dispatches on the source (image, folder,
video file, webcam index, RTSP/HTTP URL) to :func:`predict_images`, :func:`predict_video` or
:func:`maskdetect.infer.stream.run_stream`.

Example:
    >>> predictor = Predictor("workspace/exports/demo/saved_model", threshold=0.5)     # doctest: +SKIP
    >>> detections = predictor.predict(rgb_image)                                      # doctest: +SKIP
    >>> predict_video(predictor, "in.mp4", "out.mp4", json_path="out.json")           # doctest: +SKIP
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

import maskdetect
from maskdetect.detections import Detections
from maskdetect.errors import ConfigError, DataError, MaskdetectError, VideoError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".ts", ".wmv", ".flv", ".gif")
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "rtmps://", "http://", "https://", "udp://", "tcp://", "srt://")
LABEL_MAP_NAMES = ("label_map.pbtxt", "labelmap.pbtxt")

#: Defaults of the post-processing (also the CLI's).
DEFAULT_THRESHOLD = 0.5
DEFAULT_NMS_IOU = 0.5
#: Queue length between the reader, inference and writer threads of `predict_video`.
QUEUE_SIZE = 8

Threshold = float | Mapping[int | str, float]


def find_label_map(model_path: str | Path) -> Path | None:
    """``label_map.pbtxt`` (or ``labelmap.pbtxt``) in the export directory, beside the ``.tflite`` file, or in
    the parent directory (an OD API export dir holds ``saved_model/``; a run dir holds ``export/``)."""
    model_path = Path(model_path)
    first = model_path if model_path.is_dir() else model_path.parent
    for folder in (first, first.parent):
        for name in LABEL_MAP_NAMES:
            if (folder / name).is_file():
                return folder / name
    return None


def resolve_export(model_path: str | Path) -> tuple[str, Path]:
    """``("saved_model" | "tflite", path)`` for an export path: a SavedModel dir, an OD API export dir that
    holds ``saved_model/``, a ``.tflite`` file, or a dir holding exactly one ``.tflite`` file."""
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
        tflites = sorted(path.glob("*.tflite"))
        if len(tflites) == 1:
            return "tflite", tflites[0]
    raise ConfigError(f"{path}: not a model export. Pass an exported SavedModel directory (holding "
                      "saved_model.pb, e.g. workspace/exports/NAME/saved_model) or a .tflite file.")


@dataclass
class Speed:
    """Milliseconds per image of the last call, by stage."""

    preprocess_ms: float = 0.0
    inference_ms: float = 0.0
    postprocess_ms: float = 0.0


class Predictor:
    """A loaded, warmed-up detector.

    Args:
        model_path: exported SavedModel directory, its parent export directory, or a ``.tflite`` file.
        class_names: names by 0-based class id; by default read from the label map found beside the export
            (:func:`find_label_map`), else ``maskdetect.CLASSES``.
        threshold: minimum score; one number, or ``{class name or id: score}`` (classes left out use
            `DEFAULT_THRESHOLD`).
        class_thresholds: ``{class name or id: score}`` overriding a numeric `threshold` for those classes.
        cross_class_nms: suppress overlapping boxes of different classes, keeping the most confident.
        nms_iou: IoU above which two boxes are the same face.
        num_threads: TFLite interpreter threads.
        warmup: run one dummy image at load so the first real call is not slow.

    Attributes:
        backend: ``"saved_model"`` or ``"tflite"``.
        input_size: square input side of the TFLite model (None for SavedModel, which resizes itself).
        letterbox: TFLite only: frames are letterboxed, not stretched (``tflite_input.json`` beside the model,
            written by ``maskdetect.train.export``, gives this and the input normalisation; without it, pixels are
            scaled to [-1, 1] and stretched to the square input).
        speed: :class:`Speed` of the last :meth:`predict`.

    Example:
        >>> p = Predictor("exports/demo/model.tflite", threshold={"without_mask": 0.3})  # doctest: +SKIP
        >>> for detections in p.predict_stream(frames): ...                            # doctest: +SKIP
    """

    def __init__(self, model_path: str | Path, *, class_names: Sequence[str] | None = None,
                 threshold: Threshold = DEFAULT_THRESHOLD,
                 class_thresholds: Mapping[int | str, float] | None = None, cross_class_nms: bool = True,
                 nms_iou: float = DEFAULT_NMS_IOU, num_threads: int = 2, warmup: bool = True) -> None:
        self.backend, self.model_path = resolve_export(model_path)
        if class_names is None:
            label_map = find_label_map(self.model_path)
            if label_map is not None:
                from maskdetect.labelmap import read_label_map

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
        self.num_threads = num_threads
        self.input_size: int | None = None
        self.speed = Speed()
        self._lock = threading.Lock()
        started = time.perf_counter()
        if self.backend == "saved_model":
            self._load_saved_model()
        else:
            self._load_tflite()
        logger.info("loaded %s model %s in %.1f s", self.backend, self.model_path, time.perf_counter() - started)
        if warmup:
            self.predict_raw(np.zeros((self.input_size or 256, self.input_size or 256, 3), np.uint8))

    def __repr__(self) -> str:
        return f"Predictor({str(self.model_path)!r}, backend={self.backend!r}, classes={self.class_names})"

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

    def _load_tflite(self) -> None:
        import tensorflow as tf

        try:
            interpreter = tf.lite.Interpreter(model_path=str(self.model_path), num_threads=self.num_threads)
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
            tensor = self._tf.convert_to_tensor(image[None])
            t1 = time.perf_counter()
            outputs = self._signature(input_tensor=tensor)
            outputs = {k: outputs[k].numpy() for k in ("detection_boxes", "detection_classes",
                                                       "detection_scores", "num_detections")}
            t2 = time.perf_counter()
            detections = Detections.from_saved_model(outputs, (width, height))
        else:
            import cv2

            size = self.input_size
            if self.letterbox:  # longer side to `size`, pad bottom/right with 0 after normalising
                ratio = size / max(width, height)
                new_wh = (max(1, min(size, round(width * ratio))), max(1, min(size, round(height * ratio))))
                resized = cv2.resize(image, new_wh, interpolation=cv2.INTER_LINEAR)
                blob = np.zeros((1, size, size, 3), np.float32)
                blob[0, :new_wh[1], :new_wh[0]] = resized.astype(np.float32) * self._scale + self._offset
                box_frame_wh = (size / ratio, size / ratio)  # the padded square, in source pixels
            else:
                resized = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
                blob = (resized.astype(np.float32) * self._scale + self._offset)[None]
                box_frame_wh = (width, height)
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

    def postprocess(self, detections: Detections) -> Detections:
        """Apply the score thresholds, then (if enabled) cross-class NMS."""
        detections = detections.with_threshold(self.threshold)
        if self.cross_class_nms:
            detections = detections.with_cross_class_nms(self.nms_iou)
        return detections

    def predict(self, image: np.ndarray) -> Detections:
        """Detections in one RGB ``uint8`` image ``(H, W, 3)``, in its pixel coordinates."""
        raw = self.predict_raw(image)
        t0 = time.perf_counter()
        detections = self.postprocess(raw)
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


# -- sources -------------------------------------------------------------------------------------------------
def source_kind(source: str | Path | int) -> str:
    """``"webcam"`` (an int or digits), ``"stream"`` (rtsp/http/... URL), ``"folder"``, ``"image"`` or
    ``"video"`` (by suffix). Raises `DataError` for a missing path or an unknown suffix."""
    if isinstance(source, int) or (isinstance(source, str) and source.isdigit()):
        return "webcam"
    text = str(source)
    if text.lower().startswith(STREAM_SCHEMES):
        return "stream"
    path = Path(text)
    if path.is_dir():
        return "folder"
    if not path.exists():
        raise DataError(f"{path}: no such file or folder. --source takes an image, a folder of images, a video "
                        "file, a webcam index (0) or an rtsp:// / http:// URL")
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    raise DataError(f"{path}: unknown file type {suffix!r}; images are {', '.join(IMAGE_SUFFIXES)}, videos "
                    f"{', '.join(VIDEO_SUFFIXES)}")


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in `folder`, sorted by name. Raises `DataError` if there are none, or if two share
    a stem (their JSON records could not be told apart)."""
    folder = Path(folder)
    images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                    and not p.name.startswith("."))
    if not images:
        raise DataError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    stems: dict[str, Path] = {}
    for p in images:
        if p.stem in stems:
            raise DataError(f"{stems[p.stem].name} and {p.name} share the stem {p.stem!r}; rename one")
        stems[p.stem] = p
    return images


def read_image(path: str | Path) -> np.ndarray:
    """An image file as RGB ``uint8`` (EXIF orientation applied)."""
    import cv2

    if not Path(path).is_file():
        raise DataError(f"{path}: no such image file")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(f"{path}: cannot read this image (missing, corrupt or unsupported format)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def write_image(path: str | Path, image: np.ndarray) -> Path:
    """Write an RGB image atomically (format from the suffix)."""
    import cv2

    from maskdetect.fileio import atomic_path

    path = Path(path)
    ok, encoded = cv2.imencode(path.suffix or ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise DataError(f"{path}: OpenCV cannot encode images with suffix {path.suffix!r}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(encoded.tobytes())
    return path


@dataclass
class PredictionSummary:
    """What a `predict_*` call did.

    Attributes:
        kind: source kind (``image``, ``folder``, ``video``, ``webcam``, ``stream``).
        frames: images or frames processed.
        detections: boxes kept in total.
        seconds: wall time; fps: frames per second end to end.
        out_path / json_path: where the annotated output and the records went (None if not written).
        records: the JSON records (also written to `json_path`).
        frames_dropped: live streams only: frames skipped because newer ones had arrived.
    """

    kind: str
    frames: int = 0
    detections: int = 0
    seconds: float = 0.0
    out_path: Path | None = None
    json_path: Path | None = None
    records: list[dict[str, Any]] = field(default_factory=list, repr=False)
    frames_dropped: int = 0

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def predict_images(predictor: Predictor, source: str | Path, out: str | Path | None = None, *,
                   json_path: str | Path | None = None, annotator: Any = None,
                   progress: bool = True) -> PredictionSummary:
    """Detect in an image or in every image of a folder.

    Args:
        source: an image file or a folder of images (not recursive).
        out: for a folder, the output folder (annotated images keep their file names); for an image, an
            output image path (with an image suffix) or a folder. None: draw nothing.
        json_path: write ``[{"image": stem, "bbox_xyxy": [x1, y1, x2, y2], "label", "score"}, ...]`` here.
    """
    from tqdm.auto import tqdm

    from maskdetect.infer.annotate import FrameAnnotator
    from maskdetect.fileio import atomic_write_json

    source = Path(source)
    images = list_images(source) if source.is_dir() else [source]
    annotator = annotator or FrameAnnotator(predictor.class_names)
    out = Path(out) if out is not None else None
    summary = PredictionSummary(kind="folder" if source.is_dir() else "image", out_path=out)
    started = time.perf_counter()
    for path in tqdm(images, desc="predict", unit="image", disable=not progress or len(images) < 2):
        image = read_image(path)
        detections = predictor.predict(image)
        summary.records += detections.to_records(predictor.class_names, image=path.stem)
        summary.frames += 1
        summary.detections += len(detections)
        if out is not None:
            target = out if (not source.is_dir() and out.suffix.lower() in IMAGE_SUFFIXES) else out / path.name
            write_image(target, annotator.annotate(image, detections))
    summary.seconds = time.perf_counter() - started
    if json_path is not None:
        summary.json_path = atomic_write_json(json_path, summary.records)
    logger.info("%d image(s), %d detection(s), %.1f images/s", summary.frames, summary.detections, summary.fps)
    return summary


_END = object()


class _Worker(threading.Thread):
    """A thread that runs `target` and keeps its exception for the main thread to re-raise."""

    def __init__(self, target: Callable[[], None], name: str) -> None:
        super().__init__(name=name, daemon=True)
        self._target_fn = target
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._target_fn()
        except BaseException as exc:  # handed to the main thread
            self.error = exc


def _put(q: queue.Queue, item: Any, stop: threading.Event) -> bool:
    """Put, waking up regularly to see whether the pipeline is stopping. False if it is."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _accepts(function: Callable, name: str) -> bool:
    import inspect

    try:
        return name in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


def _drain(q: queue.Queue) -> None:
    while True:
        try:
            q.get_nowait()
        except queue.Empty:
            return


def predict_video(predictor: Predictor, source: str | Path, out: str | Path | None, *,
                  json_path: str | Path | None = None, monitor: Any = None, annotator: Any = None,
                  max_frames: int | None = None, keep_audio: bool = True, crf: int = 23,
                  preset: str = "ultrafast", ffmpeg_threads: int = 0,
                  progress: bool = True) -> PredictionSummary:
    """Detect in every frame of a video file and write the annotated video (H.264) and/or JSON records.

    Decoding (an ffmpeg process fed by a reader thread), inference (this thread) and annotation + encoding
    (a writer thread feeding another ffmpeg) overlap through bounded queues, so the slowest stage sets the pace.
    The output has the source's exact frame rate, every frame once in order, its audio (cut to the frames
    written), and even dimensions (odd sizes are padded by one pixel: see :mod:`maskdetect.infer.video`).

    Args:
        source: video file.
        out: output video (``.mp4``); None writes no video.
        json_path: write ``[{"frame": i, "bbox_xyxy", "label", "score", ...tracker fields}, ...]`` here.
        monitor: optional tracker/alerter with ``update(detections, frame_index, timestamp_s) -> Detections``,
            ``banner(frame_index) -> str | None`` and ``close(out_path)`` (see ``maskdetect.monitor.monitor``); it
            sees every frame in order, before annotation.
        max_frames: stop after this many frames.
        keep_audio: carry the source's audio track over.
        crf, preset: x264 quality and speed. ``ultrafast`` (default) leaves the most CPU to the model;
            ``veryfast``/``medium`` make 2-4x smaller files at a cost in end-to-end FPS.
        ffmpeg_threads: threads of the decoding and of the encoding ffmpeg (0 = ffmpeg's choice).

    Returns:
        A :class:`PredictionSummary`.

    Raises:
        VideoError: the source cannot be decoded or the output cannot be encoded (ffmpeg's message).
            Nothing is left under `out` or `json_path` on any error or on ``KeyboardInterrupt``.
    """
    from tqdm.auto import tqdm

    from maskdetect.infer.annotate import FrameAnnotator
    from maskdetect.fileio import atomic_write_json
    from maskdetect.infer.video import VideoReader, VideoWriter, probe_video

    if out is None and json_path is None:
        raise ConfigError("predict_video needs `out` (annotated video) and/or `json_path` (records)")
    monitor_takes_frame = monitor is not None and _accepts(monitor.update, "frame")
    info = probe_video(source)
    total = info.expected_frames
    if max_frames is not None:
        total = min(total, max_frames) if total else max_frames
    annotator = annotator or FrameAnnotator(predictor.class_names)
    summary = PredictionSummary(kind="video", out_path=Path(out) if out is not None else None)
    fps = float(info.fps)

    reader = VideoReader(source, info=info, max_frames=max_frames, threads=ffmpeg_threads)
    writer = None
    if out is not None:
        audio_seconds = (total / info.fps) if total else None
        writer = VideoWriter(out, info.fps, reader.size_wh, audio_from=source if keep_audio else None,
                             audio_duration_s=audio_seconds, crf=crf, preset=preset, threads=ffmpeg_threads)
    stop = threading.Event()
    frames_q: queue.Queue = queue.Queue(QUEUE_SIZE)
    out_q: queue.Queue = queue.Queue(QUEUE_SIZE)

    reader_errors: list[BaseException] = []

    def read() -> None:
        try:
            for frame in reader:
                if not _put(frames_q, frame, stop):
                    return
        except BaseException as exc:  # recorded before _END is queued, so the main thread sees it
            reader_errors.append(exc)
        finally:
            _put(frames_q, _END, stop)

    def write() -> None:
        while True:
            item = out_q.get()
            if item is _END:
                return
            frame, detections, banner = item
            writer.write(annotator.annotate(frame, detections, banner=banner))

    reader_thread = _Worker(read, "video-reader")
    writer_thread = _Worker(write, "video-writer") if writer is not None else None
    bar = tqdm(total=total, desc="predict", unit="frame", disable=not progress, dynamic_ncols=True)
    started = time.perf_counter()
    try:
        if writer is not None:
            writer.open()
            writer_thread.start()
        reader_thread.start()
        index = 0
        while True:
            try:
                frame = frames_q.get(timeout=0.5)
            except queue.Empty:
                if writer_thread is not None and writer_thread.error:
                    raise writer_thread.error
                if not reader_thread.is_alive() and frames_q.empty():
                    raise (reader_errors or [VideoError(f"{source}: the reader stopped early")])[0]
                continue
            if frame is _END:
                if reader_errors:
                    raise reader_errors[0]
                break
            detections = predictor.predict(frame)
            banner = None
            if monitor is not None:
                if monitor_takes_frame:
                    detections = monitor.update(detections, index, index / fps, frame=frame)
                else:
                    detections = monitor.update(detections, index, index / fps)
                banner = monitor.banner(index)
            summary.records += detections.to_records(predictor.class_names, frame=index)
            summary.detections += len(detections)
            if writer_thread is not None:
                while True:
                    if writer_thread.error:
                        raise writer_thread.error
                    try:
                        out_q.put((frame, detections, banner), timeout=0.5)
                        break
                    except queue.Full:
                        continue
            index += 1
            bar.update(1)
        summary.frames = index
        bar.close()
        if index == 0:
            raise VideoError(f"{source}: no frame could be decoded")
        if writer_thread is not None:
            out_q.put(_END)
            writer_thread.join()
            if writer_thread.error:
                raise writer_thread.error
            writer.close()
        summary.seconds = time.perf_counter() - started
        if monitor is not None:
            monitor.close(out if out is not None else json_path)
        if json_path is not None:
            summary.json_path = atomic_write_json(json_path, summary.records)
    except BaseException:
        stop.set()
        reader.close()
        if writer is not None:
            writer.abort()
            _drain(out_q)
            out_q.put_nowait(_END)
        raise
    finally:
        stop.set()
        bar.close()
        reader_thread.join(timeout=5)
        if writer_thread is not None and writer_thread.is_alive():
            writer_thread.join(timeout=5)
    logger.info("%d frames, %d detections, %.1f FPS end to end", summary.frames, summary.detections, summary.fps)
    return summary


def predict_source(predictor: Predictor | str | Path, source: str | Path | int, out: str | Path | None = None,
                   *, json_path: str | Path | None = None, monitor: Any = None, max_frames: int | None = None,
                   progress: bool = True, **options: Any) -> PredictionSummary:
    """Detect in any source: an image, a folder of images, a video file, a webcam index or a stream URL.

    This is what ``maskdetect predict`` runs. `predictor` may be a loaded :class:`Predictor` or an export path.
    Images and folders go to :func:`predict_images`, video files to :func:`predict_video`, webcams and URLs to
    :func:`maskdetect.infer.stream.run_stream` (`out` is then the recording). `options` go to the function chosen
    (e.g. ``keep_audio``/``preset`` for video, ``display``/``duration_s`` for streams).
    """
    kind = source_kind(source)
    if not isinstance(predictor, Predictor):
        predictor = Predictor(predictor)
    if kind in ("image", "folder"):
        if monitor is not None:
            logger.warning("tracking needs a video or a stream; ignored for %s input", kind)
        if options:
            raise ConfigError(f"options {sorted(options)} do not apply to images")
        return predict_images(predictor, source, out, json_path=json_path, progress=progress)
    if kind == "video":
        return predict_video(predictor, source, out, json_path=json_path, monitor=monitor, max_frames=max_frames,
                             progress=progress, **options)
    from maskdetect.infer.stream import run_stream

    return run_stream(predictor, int(source) if kind == "webcam" else str(source), record_path=out,
                      json_path=json_path, monitor=monitor, max_frames=max_frames, **options)


__all__ = ["Predictor", "Speed", "PredictionSummary", "find_label_map", "resolve_export", "source_kind",
           "list_images", "read_image", "write_image", "predict_images", "predict_video", "predict_source",
           "tflite_output_indices", "MaskdetectError"]

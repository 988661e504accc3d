"""The export folder, known in one place: which model a path means, and every file beside it.

An export folder holds a model (an OD API ``saved_model/``, a ``.tflite`` of some precision, an ``.onnx``) and
its sidecars: the label map, how to feed it (``tflite_input.json``), its model card (``<stem>.card.json``, or
``model_card.json`` beside a SavedModel), the ``pipeline.config`` it was exported from, and the optional second
stage (``classifier.tflite`` + ``classifier.json``). A TFLite or ONNX file also carries its classes and input spec
in its own metadata (:mod:`maskdetect.infer.tflite_metadata`, :mod:`maskdetect.infer.onnx_model`), read when the
sidecars are missing: such a file copied alone runs as exported. Their names are spelled here only: the writers
(:mod:`maskdetect.train.export`, :mod:`maskdetect.train.classifier`) write through the helpers below, and the
readers (:class:`~maskdetect.infer.predictor.Predictor`, :class:`~maskdetect.infer.classify.FaceClassifier`,
:func:`~maskdetect.train.evaluate.evaluate`) read through :class:`ExportBundle`. This module parses the pipeline
proto itself, so inference never imports training.

Example:
    >>> bundle = ExportBundle.open("workspace/runs/demo")      # doctest: +SKIP
    >>> bundle.kind, bundle.model, bundle.input.size, bundle.operating_point  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping

from maskdetect.errors import (AmbiguousModelFolderError, ConfigError, EmptyModelFolderError, ModelNotFoundError,
                               ModelPathError, OutputError, RunNotExportedError)
from maskdetect.fileio import atomic_path, atomic_write_json

logger = logging.getLogger(__name__)

# -- the names of an export folder (nowhere else) --------------------------------------------------------------
EXPORT_DIR = "export"                    # a run's export folder
SAVED_MODEL_DIR = "saved_model"          # the OD API exporter's SavedModel, inside an export folder
SAVED_MODEL_PB = "saved_model.pb"
PIPELINE_CONFIG = "pipeline.config"      # beside saved_model/: the config it was exported from
LABEL_MAP = "label_map.pbtxt"
INPUT_SPEC = "tflite_input.json"         # how to feed a TFLite or ONNX model (every file of one export)
ONNX_MODEL = "model.onnx"
SAVED_MODEL_CARD = "model_card.json"     # a SavedModel's card; a model file's is <stem>.card.json
CARD_SUFFIX = ".card.json"
CLASSIFIER = "classifier.tflite"         # the second stage
CLASSIFIER_SPEC_SUFFIX = ".json"         # classifier.tflite -> classifier.json
MODEL_FILE_KINDS = {".tflite": "tflite", ".onnx": "onnx"}
KINDS = ("saved_model", "tflite", "onnx")

#: The model shipped with the package: read only, never rewritten by a command.
BUNDLED_MODEL = Path(__file__).resolve().parents[1] / "models" / "default"

#: TFLite input normalisation when no input spec says otherwise: pixels to [-1, 1].
DEFAULT_SCALE = (2.0 / 255.0,) * 3
DEFAULT_OFFSET = (-1.0,) * 3


# -- the pipeline config -----------------------------------------------------------------------------------------
def load_pipeline(path: str | os.PathLike):
    """Parse a ``pipeline.config`` into a ``TrainEvalPipelineConfig`` proto (clear error when malformed)."""
    from google.protobuf import text_format
    from object_detection.protos import pipeline_pb2

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the pipeline config ({exc.strerror}).") from exc
    pipeline = pipeline_pb2.TrainEvalPipelineConfig()
    try:
        text_format.Merge(text, pipeline)
    except text_format.ParseError as exc:
        raise ConfigError(f"{path}: not a valid pipeline.config: {exc}") from exc
    return pipeline


def pipeline_input_size(pipeline) -> int:
    """The model's (square) input side in a ``TrainEvalPipelineConfig``: the one place it is derived."""
    resizer = pipeline.model.ssd.image_resizer
    if resizer.HasField("fixed_shape_resizer"):
        return resizer.fixed_shape_resizer.height
    return resizer.keep_aspect_ratio_resizer.max_dimension


@dataclass(frozen=True)
class Resizer:
    """The OD API image resizer of a model, as far as the predictor repeats it outside TensorFlow.

    Attributes:
        kind: ``"fixed_shape"`` (stretch to ``width x height``) or ``"keep_aspect_ratio"`` (shorter side towards
            ``min_dimension``, longer side at most ``max_dimension``; ``pad_to_max`` pads to a square).
        bilinear: bilinear sampling in colour (the predictor repeats only that; else the model resizes itself).
    """

    kind: str
    width: int = 0
    height: int = 0
    min_dimension: int = 0
    max_dimension: int = 0
    pad_to_max: bool = False
    bilinear: bool = True

    @classmethod
    def of(cls, pipeline) -> "Resizer | None":
        from object_detection.protos.image_resizer_pb2 import BILINEAR

        resizer = pipeline.model.ssd.image_resizer
        which = resizer.WhichOneof("image_resizer_oneof")
        if which == "fixed_shape_resizer":
            fixed = resizer.fixed_shape_resizer
            return cls("fixed_shape", width=fixed.width, height=fixed.height,
                       bilinear=fixed.resize_method == BILINEAR and not fixed.convert_to_grayscale)
        if which == "keep_aspect_ratio_resizer":
            keep = resizer.keep_aspect_ratio_resizer
            return cls("keep_aspect_ratio", min_dimension=keep.min_dimension, max_dimension=keep.max_dimension,
                       pad_to_max=keep.pad_to_max_dimension,
                       bilinear=keep.resize_method == BILINEAR and not keep.convert_to_grayscale)
        return None

    @property
    def letterboxes(self) -> bool:
        """The model pads every frame to a square itself (what training saw)."""
        return self.kind == "keep_aspect_ratio" and self.pad_to_max


@dataclass(frozen=True)
class InputSpec:
    """How frames are fed to the model.

    Attributes:
        size: the square input side (for a SavedModel, the side of the model's own resizer).
        letterbox: frames keep their aspect: padded bottom/right to a square (as the OD API's
            ``keep_aspect_ratio_resizer`` with ``pad_to_max_dimension`` does in training), not squeezed.
        letterbox_wider_than: without `letterbox`, frames whose longer side is more than this many times their
            shorter are letterboxed, the others squeezed (the bundled model: 1.5, so a 16:9 camera frame keeps
            its aspect while a 4:3 photo is squeezed as its training photos were; docs/experiments.md).
        scale, offset: per channel, the model's normalisation ``pixel * scale + offset`` (the TFLite graph
            starts after it; the pad of a letterbox is 0 after it, as in the OD API, which normalises first).
        resizer: a SavedModel's own resizer (None for a model file, whose input is fixed).
    """

    size: int | None
    letterbox: bool = False
    scale: tuple[float, float, float] = DEFAULT_SCALE
    offset: tuple[float, float, float] = DEFAULT_OFFSET
    resizer: Resizer | None = None
    letterbox_wider_than: float | None = None

    def __post_init__(self) -> None:
        wider = self.letterbox_wider_than
        if wider is not None and not 1.0 <= wider < 100:
            raise ValueError(f"letterbox_wider_than {wider!r} is not an aspect ratio from 1 to 100")

    def letterboxes(self, width: int, height: int) -> bool:
        """Whether a frame of this size is letterboxed: always with `letterbox`; else when its longer side is more
        than `letterbox_wider_than` times its shorter (frames far wider than the training photos keep their
        aspect; frames like them are squeezed, as in training)."""
        if self.letterbox:
            return True
        return self.letterbox_wider_than is not None and max(width, height) > self.letterbox_wider_than * min(
            width, height)

    def to_json(self) -> dict[str, Any]:
        """The ``tflite_input.json`` / card form (the resizer is read from the pipeline, not stored)."""
        return {"input_size": self.size, "letterbox": self.letterbox,
                **({"letterbox_wider_than": self.letterbox_wider_than} if self.letterbox_wider_than else {}),
                "scale": list(self.scale),
                "offset": list(self.offset),
                "layout": "RGB float32 [1,S,S,3] = pixel * scale + offset; letterbox: resize the longer side to S "
                          "keeping the aspect, pad bottom/right with 0 (after normalising); boxes are then relative "
                          "to the padded square; classes are 0-based"}

    @classmethod
    def from_json(cls, spec: Mapping[str, Any], source: Path, resizer: Resizer | None = None) -> "InputSpec":
        try:
            scale, offset = (tuple(float(v) for v in spec[k]) for k in ("scale", "offset"))
            if len(scale) != 3 or len(offset) != 3:
                raise ValueError("scale and offset need 3 values each")
            size = spec.get("input_size")
            wider = spec.get("letterbox_wider_than")
            if wider is not None and not isinstance(wider, (int, float)):
                raise ValueError(f"letterbox_wider_than {wider!r} is not a number")
            return cls(None if size is None else int(size), bool(spec.get("letterbox", False)), scale, offset,
                       resizer, None if wider is None else float(wider))
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{source}: malformed input spec ({exc}); export the model again") from exc


@dataclass(frozen=True)
class OperatingPoint:
    """The default score threshold of a model, chosen on data (``evaluate --export``), and what it gives there.

    Attributes:
        rule: how it was chosen, e.g. ``"max F1 on val"``.
        split: the split it was chosen on.
        threshold: the score threshold.
        precision, recall, f1: micro-averaged over the classes at that threshold (IoU >= 0.5, class right).
        second_stage: whether the scores were the second stage's (None: as ``predict`` runs the model).
    """

    rule: str
    split: str
    threshold: float
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None
    second_stage: bool | None = None

    @classmethod
    def from_card(cls, value: Any, source: Path) -> "OperatingPoint | None":
        if value is None:
            return None
        try:
            point = cls(**{k: value[k] for k in cls.__dataclass_fields__ if k in value})
            threshold = float(point.threshold)
        except (TypeError, KeyError, ValueError) as exc:
            raise ConfigError(f"{source}: malformed operating_point ({exc}); evaluate the export again") from exc
        if not 0.0 <= threshold <= 1.0:
            raise ConfigError(f"{source}: operating_point threshold {point.threshold} is not in [0, 1]")
        return replace(point, threshold=threshold)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# -- where things go (the writers' helpers) ----------------------------------------------------------------------
def export_folder(run_dir: str | os.PathLike) -> Path:
    """A run's export folder."""
    return Path(run_dir) / EXPORT_DIR


def saved_model_dir(folder: str | os.PathLike) -> Path:
    return Path(folder) / SAVED_MODEL_DIR


def tflite_model_path(folder: str | os.PathLike, quantize: str = "none") -> Path:
    """``model.tflite`` (float32), ``model-fp16.tflite`` or ``model-int8.tflite`` in an export folder."""
    return Path(folder) / ("model.tflite" if quantize == "none" else f"model-{quantize}.tflite")


def onnx_model_path(folder: str | os.PathLike) -> Path:
    """``model.onnx`` (float32) in an export folder."""
    return Path(folder) / ONNX_MODEL


def model_tag(model: str | os.PathLike) -> str:
    """The name a model file's card and metrics go by: its stem (``model``, ``model-int8``), with ``-onnx`` after an
    ONNX file's (``model-onnx``), so ``model.onnx`` and ``model.tflite`` in one folder never share a card."""
    model = Path(model)
    return model.stem + ("-onnx" if MODEL_FILE_KINDS.get(model.suffix) == "onnx" else "")


def card_path(model: str | os.PathLike, kind: str | None = None) -> Path:
    """The model card of a model: ``model_card.json`` beside a SavedModel, ``<tag>.card.json`` beside a file
    (:func:`model_tag`: ``model.card.json``, ``model-int8.card.json``, ``model-onnx.card.json``)."""
    model = Path(model)
    if (kind or ("saved_model" if model.suffix not in MODEL_FILE_KINDS else "")) == "saved_model":
        return model.parent / SAVED_MODEL_CARD
    return model.with_name(model_tag(model) + CARD_SUFFIX)


def write_card(model: str | os.PathLike, card: Mapping[str, Any], kind: str | None = None) -> Path:
    """Write the card of `model` (atomically; see :func:`card_path`)."""
    return atomic_write_json(card_path(model, kind), dict(card))


def write_input_spec(folder: str | os.PathLike, spec: InputSpec) -> Path:
    """Write ``tflite_input.json`` into an export folder: how to feed every model file in it."""
    return atomic_write_json(Path(folder) / INPUT_SPEC, spec.to_json())


def copy_label_map(label_map: str | os.PathLike, folder: str | os.PathLike) -> Path:
    """Copy a run's label map into an export folder (atomically)."""
    destination = Path(folder) / LABEL_MAP
    with atomic_path(destination) as tmp:
        shutil.copyfile(label_map, tmp)
    return destination


def classifier_path(folder: str | os.PathLike) -> Path:
    """Where the second stage goes in an export folder."""
    return Path(folder) / CLASSIFIER


def classifier_spec_path(classifier: str | os.PathLike) -> Path:
    """The spec (crop size, margin, classes) beside a second-stage model: ``classifier.json``."""
    return Path(classifier).with_suffix(CLASSIFIER_SPEC_SUFFIX)


def write_classifier_spec(classifier: str | os.PathLike, spec: Mapping[str, Any]) -> Path:
    return atomic_write_json(classifier_spec_path(classifier), dict(spec))


def bundled_model() -> Path:
    """The model shipped with the package (``maskdetect/models/default``: a TFLite model, its label map,
    input spec and card, and the second stage), used when no model is given."""
    models = _model_files(BUNDLED_MODEL) if BUNDLED_MODEL.is_dir() else []
    if len(models) != 1:
        raise ConfigError(f"{BUNDLED_MODEL}: no bundled model in this install; pass an export (--model)")
    return models[0]


def _model_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.suffix in MODEL_FILE_KINDS and p.name != CLASSIFIER and p.is_file())


def _is_run(folder: Path) -> bool:
    return (folder / PIPELINE_CONFIG).is_file() and any(
        (folder / name).exists() for name in (EXPORT_DIR, "checkpoints", "data_manifest.json"))


def _resolve(path: Path) -> tuple[str, Path, Path | None]:
    """``(kind, model path, run folder or None)`` for a model path; the four typed errors otherwise."""
    accepted = ("Pass an export folder (e.g. workspace/runs/NAME/export), a .tflite or .onnx file, a SavedModel "
                "folder, or a run folder after `maskdetect export RUN`.")
    if not path.exists():
        raise ModelNotFoundError(f"{path}: no such file or folder. {accepted}")
    if path.is_file():
        if path.suffix in MODEL_FILE_KINDS:
            return MODEL_FILE_KINDS[path.suffix], path, None
        if path.name == SAVED_MODEL_PB:
            return "saved_model", path.parent, None
        raise ModelPathError(f"{path}: not a model file (.tflite, .onnx or saved_model.pb). {accepted}")
    if (path / SAVED_MODEL_PB).is_file():
        return "saved_model", path, None
    if (saved_model_dir(path) / SAVED_MODEL_PB).is_file():  # the OD API's export layout: its SavedModel first
        return "saved_model", saved_model_dir(path), None
    models = _model_files(path)
    if len(models) == 1:
        return MODEL_FILE_KINDS[models[0].suffix], models[0], None
    if len(models) > 1:
        names = ", ".join(p.name for p in models)
        raise AmbiguousModelFolderError(f"{path}: holds {len(models)} models ({names}); pass the file you mean, "
                                        f"e.g. {path / models[-1].name}")
    if _is_run(path):
        exports = export_folder(path)
        if exports.is_dir() and any(exports.iterdir()):
            try:
                kind, model, _ = _resolve(exports)
            except EmptyModelFolderError:
                pass
            else:
                return kind, model, path
        raise RunNotExportedError(f"{path}: a run with no exported model in {exports}; run `maskdetect export "
                                  f"{path}` first (or pass an exported model)")
    entries = sorted(p.name for p in path.iterdir())
    if not entries:
        raise EmptyModelFolderError(f"{path}: the folder is empty. {accepted}")
    shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
    raise EmptyModelFolderError(f"{path}: holds no model (no saved_model.pb, .tflite or .onnx file; found {shown}). "
                                f"{accepted}")


class ExportBundle:
    """A model and the files beside it.

    Open one with :meth:`open`. Attributes are read lazily (a TFLite bundle never imports TensorFlow).

    Attributes:
        kind: ``"saved_model"``, ``"tflite"`` or ``"onnx"``.
        model: the SavedModel folder or the model file.
        folder: the export folder the sidecars are in (the model file's folder, the SavedModel's parent).
        run_dir: the run folder, when the bundle was opened through one.
    """

    def __init__(self, kind: str, model: Path, run_dir: Path | None = None) -> None:
        if kind not in KINDS:
            raise ConfigError(f"model kind {kind!r}: choose from {', '.join(KINDS)}")
        self.kind, self.model, self.run_dir = kind, Path(model), run_dir
        self.folder = self.model.parent

    @classmethod
    def open(cls, path: str | os.PathLike | None = None) -> "ExportBundle":
        """The bundle a path means: an export folder (its SavedModel if it holds one, else its one model file), a
        model file, a SavedModel folder, or a run folder (its ``export/``); None: the bundled model.

        Raises:
            ModelNotFoundError: the path does not exist.
            EmptyModelFolderError: a folder with no model in it.
            RunNotExportedError: a run folder that holds no exported model yet.
            AmbiguousModelFolderError: a folder with two or more model files (pass one).
        """
        if isinstance(path, ExportBundle):
            return path
        kind, model, run_dir = _resolve(Path(os.fspath(path)) if path is not None else bundled_model())
        return cls(kind, model, run_dir)

    def __repr__(self) -> str:
        return f"ExportBundle({self.kind!r}, {str(self.model)!r})"

    # -- files ----------------------------------------------------------------------------------------------
    @property
    def is_bundled(self) -> bool:
        """The model shipped with the package (read only)."""
        return self.folder.resolve() == BUNDLED_MODEL.resolve()

    @property
    def card_path(self) -> Path:
        return card_path(self.model, self.kind)

    @property
    def label_map(self) -> Path | None:
        """The label map beside the model (or one folder up), if any."""
        from maskdetect.labelmap import find_label_map

        return find_label_map(self.model)

    @property
    def input_spec_path(self) -> Path:
        return self.folder / INPUT_SPEC

    @property
    def pipeline_config(self) -> Path | None:
        path = self.folder / PIPELINE_CONFIG
        return path if path.is_file() else None

    @property
    def classifier(self) -> Path | None:
        """The second stage beside the model, if there is one."""
        path = classifier_path(self.folder)
        return path if path.is_file() else None

    def input_files(self, classifier: str | os.PathLike | None = "auto") -> list[Path]:
        """Every file a command reads for this model: the model, its card, label map, input spec and pipeline
        config, and the second stage with its spec (`classifier`: ``"auto"`` the one beside it, a path, or None).
        Outputs may be none of these (:mod:`maskdetect.guard`)."""
        second = self.classifier if str(classifier) == "auto" else (
            None if classifier is None or str(classifier) == "none" else Path(classifier))
        files = [self.model, self.card_path, self.label_map, self.input_spec_path, self.pipeline_config]
        if second is not None:
            files += [second, classifier_spec_path(second)]
        return [p for p in dict.fromkeys(files) if p is not None and (p == self.model or p.exists())]

    def guarded_inputs(self, classifier: str | os.PathLike | None = "auto") -> dict[str, Path]:
        """:meth:`input_files` named for the output guard (:func:`maskdetect.guard.check_paths`)."""
        return {f"model file {path.name}" if path.parent == self.folder else f"model file {path}": path
                for path in self.input_files(classifier)}

    # -- contents -------------------------------------------------------------------------------------------
    @cached_property
    def class_names(self) -> list[str]:
        """Names by 0-based class id: from the label map beside the model, else the card, else the model file's
        own metadata (ONNX, TFLite), else ``maskdetect.CLASSES`` (with a warning)."""
        from maskdetect.labelmap import read_label_map

        if self.label_map is not None:
            return read_label_map(self.label_map)
        if self.card.get("classes"):
            return [str(name) for name in self.card["classes"]]
        if self.file_metadata:
            return [str(name) for name in self.file_metadata["classes"]]
        import maskdetect

        logger.warning("no label_map.pbtxt beside %s; using the default classes %s", self.model,
                       ", ".join(maskdetect.CLASSES))
        return list(maskdetect.CLASSES)

    @property
    def card(self) -> dict[str, Any]:
        """The model card (``{}`` if there is none)."""
        if "_card" not in self.__dict__:
            path = self.card_path
            try:
                self._card = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
            except (OSError, ValueError) as exc:
                raise ConfigError(f"{path}: unreadable model card ({exc}); export the model again") from exc
        return self._card

    def update_card(self, **changes: Any) -> Path:
        """Set top-level fields of the card (None removes one) and write it atomically.

        Raises:
            OutputError: the bundled model (its card is part of the package and never rewritten).
        """
        if self.is_bundled:
            raise OutputError(f"{self.card_path}: the bundled model's card is read only; evaluate or copy your own "
                              "export instead")
        card = {**self.card, **changes}
        card = {k: v for k, v in card.items() if k not in changes or v is not None}  # the card's own None stays
        path = atomic_write_json(self.card_path, card)
        self._card = card
        return path

    @cached_property
    def pipeline(self):
        """The ``pipeline.config`` beside a SavedModel, parsed (None without one)."""
        return None if self.pipeline_config is None else load_pipeline(self.pipeline_config)

    @cached_property
    def input(self) -> InputSpec:
        """How to feed the model: a model file's ``tflite_input.json`` (without one: the file's own metadata; else
        pixels to [-1, 1], squeezed to the square input, whose size the file itself gives); a SavedModel's resizer
        from its ``pipeline.config``, and the letterbox and normalisation its card's ``input`` records."""
        if self.kind == "saved_model":
            resizer = Resizer.of(self.pipeline) if self.pipeline is not None else None
            size = pipeline_input_size(self.pipeline) if self.pipeline is not None else None
            recorded = self.card.get("input")
            if recorded:
                spec = InputSpec.from_json(recorded, self.card_path, resizer)
                return InputSpec(size or spec.size, spec.letterbox, spec.scale, spec.offset, resizer,
                                 spec.letterbox_wider_than)
            return InputSpec(size, bool(resizer and resizer.letterboxes), resizer=resizer)
        if self.input_spec_path.is_file():
            try:
                spec = json.loads(self.input_spec_path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ConfigError(f"{self.input_spec_path}: malformed ({exc}); export the model again") from exc
            return InputSpec.from_json(spec, self.input_spec_path)
        if self.file_metadata:  # the file carries it
            return InputSpec.from_json(self.file_metadata["input"], self.model)
        logger.info("no %s beside %s: feeding pixels scaled to [-1, 1], squeezed to the square input", INPUT_SPEC,
                    self.model)
        return InputSpec(None)

    @cached_property
    def file_metadata(self) -> dict[str, Any]:
        """What the model file says of itself (classes, input; an ONNX file also its post-processing), read when a
        sidecar is missing: an ONNX file's ``metadata_props``, a TFLite file's ``maskdetect`` metadata entry
        (``{}`` for a SavedModel, or a TFLite file exported before those entries were written).

        Raises:
            ConfigError: onnxruntime missing (naming its pip line), or metadata that is missing (ONNX) or malformed.
        """
        if self.kind == "onnx":
            from maskdetect.infer.onnx_model import file_metadata

            return file_metadata(self.model)
        if self.kind == "tflite":
            from maskdetect.infer import tflite_metadata

            return tflite_metadata.read(self.model) or {}
        return {}

    @property
    def operating_point(self) -> OperatingPoint | None:
        """The default threshold chosen on data, as ``predict`` runs the model (None if never chosen)."""
        return OperatingPoint.from_card(self.card.get("operating_point"), self.card_path)

    def operating_point_for(self, second_stage: bool) -> OperatingPoint | None:
        """The operating point measured with (or without) the second stage: the card's ``operating_point`` if it
        was (or says nothing of it), else the one under :func:`operating_point_key`."""
        point = self.operating_point
        if point is not None and point.second_stage in (None, second_stage):
            return point
        return OperatingPoint.from_card(self.card.get(operating_point_key(second_stage)), self.card_path)

    @property
    def backbone(self) -> dict[str, Any] | None:
        """Where the pretrained backbone came from (source, path, sha256, detail, layers_restored), or None."""
        return self.card.get("backbone")

    def describe(self) -> str:
        """One line from the card: architecture, input, precision, validation figures."""
        card = self.card
        if not card:
            return str(self.model)
        measured = card.get("measured", {})
        val, both = measured.get("val", {}), measured.get("val_with_classifier", {})
        figures = f", val mAP@0.5 {val['mAP@0.5']:.2f}" if val.get("mAP@0.5") is not None else ""
        if figures and both.get("mAP@0.5") is not None:
            figures += f" alone, {both['mAP@0.5']:.2f} with its second stage"
        return (f"{self.model} ({card.get('feature_extractor', '?')}, {card.get('input_size', '?')} px, "
                f"{card.get('precision', '?')}{figures}; card: {self.card_path.name})")


def operating_point_key(second_stage: bool) -> str:
    """The card key of an operating point measured the other way than ``predict`` runs the model by default."""
    return "operating_point_with_classifier" if second_stage else "operating_point_without_classifier"


__all__ = ["ExportBundle", "InputSpec", "OperatingPoint", "Resizer", "BUNDLED_MODEL", "bundled_model",
           "load_pipeline", "pipeline_input_size", "card_path", "write_card", "write_input_spec",
           "copy_label_map", "classifier_path", "classifier_spec_path", "write_classifier_spec",
           "tflite_model_path", "onnx_model_path", "model_tag",
           "saved_model_dir", "export_folder", "operating_point_key"]

"""Export a run: a SavedModel through ``exporter_lib_v2`` (label map and model card beside it), or a TFLite
model through the OD API's TFLite graph export and the TFLite converter.

The export folder's layout and file names belong to :mod:`maskdetect.infer.bundle`, whose helpers write it:
``RUN_DIR/export/`` holds ``saved_model/`` (with ``pipeline.config``, ``checkpoint/`` and its card) and the TFLite
models (``model.tflite``, ``model-fp16.tflite``, ``model-int8.tflite``), each with its card, their label map and
the input spec that feeds every precision. A card records where a pretrained backbone came from (the run's
``backbone.json``, written by ``configure --backbone-weights``).
"""

from __future__ import annotations

import copy
import json
import logging
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from maskdetect.errors import ConfigError
from maskdetect.fileio import atomic_path
from maskdetect.infer.bundle import (PIPELINE_CONFIG, SAVED_MODEL_DIR, InputSpec, Resizer, copy_label_map,
                                     onnx_model_path, pipeline_input_size, write_card, write_input_spec)
from maskdetect.train.pipeline import at_image_size
from maskdetect.train.run import Run

logger = logging.getLogger(__name__)

FORMATS = ("saved_model", "tflite", "onnx")
#: The ONNX opset written (ONNX Runtime >= 1.16, TensorRT 8.6+ and OpenVINO 2023+ read it).
ONNX_OPSET = 17
QUANTIZATIONS = ("none", "fp16", "int8")
# The detection post-processing op of a TFLite export ranks and suppresses only the anchors whose best class score
# reaches this floor. The run's config says 1e-8: all ~12,800 anchors of the 320-px MobileNet go through NMS, 11.4
# of an int8 frame's 30 ms; at 0.01 it is 1.5 ms and val AP is unchanged (docs/experiments.md, "Post-processing").
DEFAULT_SCORE_FLOOR = 0.01
PRECISION = {"none": "float32", "fp16": "float16 weights", "int8": "int8 (full-integer kernels, float input/output)"}
BACKBONE_RECORD = "backbone.json"  # in the run: written by `configure --backbone-weights` (train/backbone.py)


def library_versions() -> dict:
    import numpy
    import tensorflow as tf

    import maskdetect

    return {"maskdetect": maskdetect.__version__, "tensorflow": tf.__version__, "numpy": numpy.__version__,
            "python": platform.python_version()}


def backbone_provenance(run: Run) -> dict | None:
    """Where the run's pretrained backbone came from (source, path, sha256, detail, layers_restored), or None."""
    path = run.run_dir / BACKBONE_RECORD
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable ({exc}); configure the run again with --backbone-weights") from exc


def model_card(run: Run, pipeline, *, fmt: str, seconds: float, extra: dict | None = None) -> dict:
    """The model card of an export: classes, input size (the exported `pipeline`'s and the one trained at),
    training data manifest, the backbone's provenance, metrics, versions."""
    data = run.data_info()
    return {
        "format": fmt,
        "classes": run.class_names,
        "input_size": pipeline_input_size(pipeline),
        "trained_input_size": run.input_size,
        "resizer": pipeline.model.ssd.image_resizer.WhichOneof("image_resizer_oneof"),
        "feature_extractor": pipeline.model.ssd.feature_extractor.type,
        "checkpoint": run.latest_checkpoint(),
        "trained_steps": pipeline.train_config.num_steps,
        "fine_tuned_from": pipeline.train_config.fine_tune_checkpoint or None,
        "backbone": backbone_provenance(run),
        "training_data": data.get("manifest", data),
        # the checkpoint's figures only: an earlier export's describe another file (this one's are written under
        # "measured" when `evaluate --export` scores it); files older than --image-size were at the trained size
        "metrics": {name: {**{k: m.get(k) for k in ("mAP@0.5", "AP@0.5", "split", "num_images")},
                           "input_size": m.get("input_size", run.input_size)}
                    for name, m in run.metrics().items() if m.get("evaluated") == "checkpoint"},
        "versions": library_versions(),
        "export_seconds": round(seconds, 1),
        **(extra or {}),
    }


def input_spec(model, pipeline, letterbox: bool | float | None) -> InputSpec:
    """How frames are fed to the exported model: its normalisation (``pixel * scale + offset``, from the detection
    model's own preprocess), its input size, and whether frames are letterboxed: `letterbox` True (always) or
    False (never, squeezed); a ratio R (frames whose longer side exceeds R times the shorter are letterboxed, the
    others squeezed: a camera's 16:9 keeps its aspect, a 4:3 photo is squeezed as the training photos were); or
    None: as the model was trained (a ``keep_aspect_ratio_resizer`` padded to a square letterboxes)."""
    scale, offset = normalisation(model)
    size, scale, offset = pipeline_input_size(pipeline), tuple(scale.tolist()), tuple(offset.tolist())
    if letterbox is None:
        resizer = Resizer.of(pipeline)
        letterbox = bool(resizer and resizer.letterboxes)
    if isinstance(letterbox, bool):
        return InputSpec(size, letterbox, scale, offset)
    try:
        return InputSpec(size, False, scale, offset, letterbox_wider_than=float(letterbox))
    except ValueError as exc:
        raise ConfigError(f"letterbox={letterbox!r}: {exc}, e.g. 1.5") from exc


def export_saved_model(run_dir: Run | str | Path, *, image_size: int | None = None,
                       letterbox: bool | float | None = None) -> Path:
    """Export the newest checkpoint as ``RUN_DIR/export/saved_model`` (run at `image_size`, default the size
    it was trained at: :func:`~maskdetect.train.pipeline.at_image_size`) and return that path. `letterbox`: see
    :func:`input_spec`; recorded on the card, where the predictor reads it."""
    from object_detection import exporter_lib_v2
    from object_detection.builders import model_builder

    run = Run.open(run_dir)
    run.require_checkpoint()
    checkpoints, pipeline = run.checkpoints, at_image_size(run.pipeline, image_size)  # a copy: the exporter edits it
    started = time.monotonic()
    run.exports.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".saved_model.", dir=run.exports))
    try:
        exporter_lib_v2.export_inference_graph("image_tensor", pipeline, str(checkpoints), str(staging))
        for name in (SAVED_MODEL_DIR, "checkpoint", PIPELINE_CONFIG):  # what the OD API exporter writes
            with atomic_path(run.exports / name, is_dir=(staging / name).is_dir()) as tmp:
                if (staging / name).is_dir():
                    tmp.rmdir()
                shutil.move(str(staging / name), str(tmp))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    copy_label_map(run.label_map, run.exports)
    exported = at_image_size(run.pipeline, image_size)
    spec = input_spec(model_builder.build(model_config=exported.model, is_training=False), exported, letterbox)
    write_card(run.saved_model, model_card(run, exported, fmt="saved_model", seconds=time.monotonic() - started,
                                           extra={"input": spec.to_json()}), "saved_model")
    logger.info("exported SavedModel to %s in %.0f s", run.saved_model, time.monotonic() - started)
    return run.saved_model


def tflite_pipeline(pipeline, score_floor: float = DEFAULT_SCORE_FLOOR):
    """The pipeline with a fixed-shape resizer, which the TFLite export requires (docs/od-api.md, breakage 9), and
    the post-processing op's score threshold raised to `score_floor` (never lowered).

    A keep-aspect-ratio resizer that pads to a square becomes a fixed square of the same size; the
    predictor then letterboxes frames itself (the input spec says so), so both see the same input. Returns the
    pipeline and whether the model was trained letterboxed."""
    if not 0.0 <= score_floor < 1.0:
        raise ConfigError(f"score floor {score_floor}: choose a score in [0, 1), e.g. {DEFAULT_SCORE_FLOOR}")
    pipeline = copy.deepcopy(pipeline)
    nms = pipeline.model.ssd.post_processing.batch_non_max_suppression
    nms.score_threshold = max(nms.score_threshold, score_floor)
    resizer = pipeline.model.ssd.image_resizer
    letterbox = False
    if not resizer.HasField("fixed_shape_resizer"):
        keep = resizer.keep_aspect_ratio_resizer
        if not keep.pad_to_max_dimension or keep.min_dimension != keep.max_dimension:
            raise ConfigError("TFLite export needs a square input: use keep_aspect_ratio_resizer with "
                              "pad_to_max_dimension and min_dimension == max_dimension, or fixed_shape_resizer")
        size = keep.max_dimension
        resizer.fixed_shape_resizer.height = size
        resizer.fixed_shape_resizer.width = size
        letterbox = True
    return pipeline, letterbox


def calibration_images(run: Run, count: int, *, seed: int = 0) -> tuple[list[np.ndarray], list[str]]:
    """`count` RGB images drawn (seeded) from the run's training records, and their names: the representative
    data set of an INT8 export."""
    import glob

    import cv2

    from maskdetect.data.tfrecord import iter_records, parse_example

    if count < 1:
        raise ConfigError(f"calibration images: {count}; INT8 needs at least 1 (default 100)")
    patterns = run.pipeline.train_input_reader.tf_record_input_reader.input_path
    files = sorted({Path(p) for pattern in patterns for p in glob.glob(pattern)})
    if not files:
        raise ConfigError(f"{run.pipeline_config}: no training records at {list(patterns)} to calibrate INT8 "
                          "with; convert the data again or export with --quantize none/fp16")
    encoded = [(example["filename"] or example["source_id"] or f"{path.name}#{i}", example["encoded"])
               for path in files for i, example in enumerate(map(parse_example, iter_records(path)))]
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(encoded), size=min(count, len(encoded)), replace=False))
    images = [cv2.cvtColor(cv2.imdecode(np.frombuffer(encoded[i][1], np.uint8), cv2.IMREAD_COLOR),
                           cv2.COLOR_BGR2RGB) for i in chosen]
    return images, [encoded[i][0] for i in chosen]


def normalisation(model) -> tuple[np.ndarray, np.ndarray]:
    """``(scale, offset)``, per channel: the detection model's preprocess as ``pixel * scale + offset`` (where
    the TFLite graph starts)."""
    import tensorflow as tf

    probe = tf.constant(np.stack([np.zeros((1, 1, 3)), np.full((1, 1, 3), 255.0)]), tf.float32)
    normalised = model.feature_extractor.preprocess(probe).numpy().reshape(2, 3)
    return (normalised[1] - normalised[0]) / 255.0, normalised[0]


def set_precision(converter, quantize: str, representative: Callable[[], Iterable[list[np.ndarray]]]) -> None:
    """Set a ``tf.lite.TFLiteConverter`` to write `quantize` (see :data:`QUANTIZATIONS`); `representative` yields
    the calibration inputs of ``int8``."""
    import tensorflow as tf

    converter.optimizations = []
    if quantize == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        # integer kernels wherever they exist; the post-processing custom op stays float
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]


def export_tflite(run_dir: Run | str | Path, *, quantize: str = "none", calibration_count: int = 100,
                  calibration_seed: int = 0, max_detections: int = 100,
                  score_floor: float = DEFAULT_SCORE_FLOOR, image_size: int | None = None,
                  letterbox: bool | float | None = None) -> Path:
    """Export the newest checkpoint as TFLite beside its input spec; return the model path.

    Args:
        quantize: ``none`` (float32, ``model.tflite``), ``fp16`` (float16 weights, ``model-fp16.tflite``) or
            ``int8`` (full-integer kernels calibrated on `calibration_count` training images drawn with
            `calibration_seed`, ``model-int8.tflite``; input and outputs stay float32 and the detection
            post-processing op float, so every precision is fed and read alike).
        score_floor: the post-processing op considers only anchors whose best class score reaches it
            (never below the run's own ``score_threshold``); recorded on the card.
        image_size: the model's input size (default: the size it was trained at;
            :func:`~maskdetect.train.pipeline.at_image_size`); recorded on the card and in the input spec.
        letterbox: frames padded to a square instead of squeezed: True, False, a ratio (frames wider than it), or
            None, as trained (:func:`input_spec`); recorded in the input spec, where the predictor reads it.
    """
    return export_tflite_precisions(run_dir, (quantize,), calibration_count=calibration_count,
                                    calibration_seed=calibration_seed, max_detections=max_detections,
                                    score_floor=score_floor, image_size=image_size, letterbox=letterbox)[quantize]


def export_tflite_precisions(run_dir: Run | str | Path, precisions: Sequence[str] = QUANTIZATIONS, *,
                             calibration_count: int = 100, calibration_seed: int = 0,
                             max_detections: int = 100, score_floor: float = DEFAULT_SCORE_FLOOR,
                             image_size: int | None = None, letterbox: bool | float | None = None) -> dict[str, Path]:
    """:func:`export_tflite` for several precisions at once (the TFLite graph is traced once); returns
    ``{precision: path}``."""
    import tensorflow as tf
    from object_detection import export_tflite_graph_lib_tf2
    from object_detection.builders import model_builder

    from maskdetect.infer import tflite_metadata
    from maskdetect.infer.predictor import tflite_input

    unknown = [q for q in precisions if q not in QUANTIZATIONS]
    if unknown or not precisions:
        raise ConfigError(f"quantize={unknown or list(precisions)}: choose from {', '.join(QUANTIZATIONS)}")
    run = Run.open(run_dir)
    run.require_checkpoint()
    pipeline, trained_letterbox = tflite_pipeline(at_image_size(run.pipeline, image_size), score_floor)
    calibration = None
    if "int8" in precisions:  # drawn before the graph is traced: a bad count or missing records fail fast
        images, names = calibration_images(run, calibration_count, seed=calibration_seed)
        calibration = {"images": len(images), "seed": calibration_seed, "from": "training records", "names": names}
    started = time.monotonic()
    # The TFLite graph starts after the model's preprocess: record the per-channel affine normalisation.
    spec = input_spec(model_builder.build(model_config=pipeline.model, is_training=False), pipeline,
                      trained_letterbox if letterbox is None else letterbox)
    scale, offset = np.asarray(spec.scale, np.float32), np.asarray(spec.offset, np.float32)
    run.exports.mkdir(parents=True, exist_ok=True)
    write_input_spec(run.exports, spec)
    copy_label_map(run.label_map, run.exports)
    paths = {}
    with tempfile.TemporaryDirectory(prefix=".tflite.", dir=run.exports) as staging:
        export_tflite_graph_lib_tf2.export_tflite_model(pipeline, str(run.checkpoints), staging, max_detections,
                                                        use_regular_nms=False)
        for quantize in dict.fromkeys(precisions):
            converting = time.monotonic()
            converter = tf.lite.TFLiteConverter.from_saved_model(str(Path(staging) / "saved_model"))
            set_precision(converter, quantize, lambda: (
                [tflite_input(image, spec.size, scale, offset, spec.letterboxes(image.shape[1], image.shape[0]))[0]]
                for image in images))
            model_bytes = tflite_metadata.embed(converter.convert(), {"classes": run.class_names,
                                                                   "input": spec.to_json()})
            destination = run.tflite_path(quantize)
            with atomic_path(destination) as tmp:
                tmp.write_bytes(model_bytes)
            write_card(destination, model_card(run, pipeline, fmt="tflite", seconds=time.monotonic() - started,
                                               extra={"precision": PRECISION[quantize],
                                                      "calibration": calibration if quantize == "int8" else None,
                                                      "max_detections": max_detections,
                                                      "score_floor": pipeline.model.ssd.post_processing
                                                      .batch_non_max_suppression.score_threshold,
                                                      "size_mb": round(len(model_bytes) / 1e6, 2)}), "tflite")
            logger.info("exported TFLite %s model to %s (%.1f MB) in %.0f s", PRECISION[quantize], destination,
                        len(model_bytes) / 1e6, time.monotonic() - converting)
            paths[quantize] = destination
    return paths


def ssd_decoding(pipeline, max_detections: int):
    """The settings of the TFLite post-processing op for `pipeline` (as the OD API's TFLite export reads them)."""
    from maskdetect.infer.onnx_model import SSDDecoding

    ssd = pipeline.model.ssd
    coder, nms = ssd.box_coder.faster_rcnn_box_coder, ssd.post_processing.batch_non_max_suppression
    return SSDDecoding((coder.y_scale, coder.x_scale, coder.height_scale, coder.width_scale), nms.iou_threshold,
                       nms.score_threshold, max_detections)


def raw_ssd_graph(model, pipeline, checkpoints: Path, batch: int = 1):
    """The detection `model` (built from `pipeline`) at the newest checkpoint in `checkpoints` as the TFLite
    export's graph without its post-processing op, frozen: a ``GraphDef`` from the normalised ``[batch, S, S, 3]``
    input (``input:0``) to the raw ``box_encodings``, the ``class_predictions`` (after the score conversion) and
    the anchors (centre-size, ``[N, 4]``, a constant); returns it and the names of those three tensors. The
    exports are traced at batch 1 (the graph's reshapes keep it); ``bench/bench_batch_inference.py`` traces more."""
    import tensorflow as tf
    from object_detection.builders import post_processing_builder
    from object_detection.core import box_list
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    checkpoint = tf.train.Checkpoint(model=model)
    checkpoint.restore(tf.train.latest_checkpoint(str(checkpoints))).expect_partial()
    _, score_conversion = post_processing_builder.build(pipeline.model.ssd.post_processing)
    size = pipeline_input_size(pipeline)
    corners = model.predict(tf.zeros([1, size, size, 3]), true_image_shapes=None)["anchors"]  # builds, restores
    y, x, h, w = box_list.BoxList(corners).get_center_coordinates_and_sizes()
    anchors = np.stack([y, x, h, w], axis=1).astype(np.float32)

    @tf.function(input_signature=[tf.TensorSpec([batch, size, size, 3], tf.float32, name="input")])
    def raw(image):
        predicted = model.predict(image, true_image_shapes=None)
        return (tf.identity(predicted["box_encodings"]),
                score_conversion(predicted["class_predictions_with_background"]),
                tf.constant(anchors))

    # Frozen here, not by tf2onnx.convert.from_function: the anchor generator's eager constants are captured
    # inputs of the function, which that function would then ask the frozen graph for by name.
    frozen = convert_variables_to_constants_v2(raw.get_concrete_function(), lower_control_flow=False,
                                               aggressive_inlining=True)
    return frozen.graph.as_graph_def(add_shapes=True), [t.name for t in frozen.outputs]


def export_onnx(run_dir: Run | str | Path, *, max_detections: int = 100, score_floor: float = DEFAULT_SCORE_FLOOR,
                image_size: int | None = None, letterbox: bool | float | None = None) -> Path:
    """Export the newest checkpoint as ONNX (float32, ``model.onnx``, converted by tf2onnx) beside its input
    spec, label map and card; return its path.

    The file is the TFLite export's network without the post-processing op (which has no ONNX counterpart):
    raw box encodings, class scores and anchors, decoded and suppressed by the predictor as the op does
    (:mod:`maskdetect.infer.onnx_model`). Its ``metadata_props`` carry the classes, the input normalisation and
    those decoding settings. Arguments as :func:`export_tflite`.
    """
    try:
        import tf2onnx
    except ImportError as exc:
        from maskdetect.compat import ONNX_EXPORT_INSTALL

        raise ConfigError(f"ONNX export needs tf2onnx: {ONNX_EXPORT_INSTALL}") from exc
    from object_detection.builders import model_builder

    from maskdetect.infer.onnx_model import METADATA_KEYS, OUTPUTS

    run = Run.open(run_dir)
    run.require_checkpoint()
    pipeline, trained_letterbox = tflite_pipeline(at_image_size(run.pipeline, image_size), score_floor)
    started = time.monotonic()
    model = model_builder.build(model_config=pipeline.model, is_training=False)
    spec = input_spec(model, pipeline, trained_letterbox if letterbox is None else letterbox)
    decoding = ssd_decoding(pipeline, max_detections)
    graph_def, outputs = raw_ssd_graph(model, pipeline, run.checkpoints)
    model_proto, _ = tf2onnx.convert.from_graph_def(graph_def, name="maskdetect", input_names=["input:0"],
                                                    output_names=outputs, opset=ONNX_OPSET,
                                                    tensors_to_rename={**dict(zip(outputs, OUTPUTS)),
                                                                       "input:0": "input"})
    values = {"classes": run.class_names, "input": spec.to_json(), "postprocess": decoding.to_json()}
    for key in METADATA_KEYS:
        entry = model_proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(values[key])
    model_bytes = model_proto.SerializeToString()
    run.exports.mkdir(parents=True, exist_ok=True)
    write_input_spec(run.exports, spec)
    copy_label_map(run.label_map, run.exports)
    destination = onnx_model_path(run.exports)
    with atomic_path(destination) as tmp:
        tmp.write_bytes(model_bytes)
    write_card(destination, model_card(run, pipeline, fmt="onnx", seconds=time.monotonic() - started,
                                       extra={"precision": PRECISION["none"], "opset": ONNX_OPSET,
                                              "postprocess": decoding.to_json(),
                                              "size_mb": round(len(model_bytes) / 1e6, 2)}), "onnx")
    logger.info("exported ONNX model to %s (%.1f MB) in %.0f s", destination, len(model_bytes) / 1e6,
                time.monotonic() - started)
    return destination


def export(run_dir: Run | str | Path, fmt: str = "saved_model", *, quantize: str = "none",
           calibration_count: int = 100, calibration_seed: int = 0,
           score_floor: float = DEFAULT_SCORE_FLOOR, image_size: int | None = None,
           letterbox: bool | float | None = None) -> Path:
    """Export the run's newest checkpoint as `fmt` (``saved_model``, ``tflite`` or ``onnx``; see
    :func:`export_saved_model`, :func:`export_tflite` and :func:`export_onnx`); `letterbox` (default: as trained) is
    recorded in the export for the predictor."""
    if fmt == "saved_model":
        if quantize != "none":
            raise ConfigError("--quantize applies to --format tflite only")
        if score_floor != DEFAULT_SCORE_FLOOR:
            raise ConfigError("--score-floor applies to --format tflite only")
        return export_saved_model(run_dir, image_size=image_size, letterbox=letterbox)
    if fmt == "tflite":
        return export_tflite(run_dir, quantize=quantize, calibration_count=calibration_count,
                             calibration_seed=calibration_seed, score_floor=score_floor, image_size=image_size,
                             letterbox=letterbox)
    if fmt == "onnx":
        if quantize != "none":
            raise ConfigError("--quantize applies to --format tflite only (ONNX is exported in float32)")
        return export_onnx(run_dir, score_floor=score_floor, image_size=image_size, letterbox=letterbox)
    raise ConfigError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")

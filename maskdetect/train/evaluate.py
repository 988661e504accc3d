"""Evaluate a run's checkpoint, or its exported SavedModel, on a split: COCO metrics, per-class AP@0.5 and
mAP@0.5 (the OD API's own evaluators), precision-recall curves and a confusion matrix (PNG), metrics JSON, and the
operating point: the score threshold that maximises micro-F1 on the split, which an export's card then carries as
the predictor's default threshold.

Both paths feed the same decoded images through the same metric code, so the checkpoint's figures and the
export's figures differ only by what export changes (they must agree within 0.5 AP). Ground truth and
detections are :class:`~maskdetect.detections.Detections` (pixel ``xyxy``, 0-based classes) like everywhere
else; they take the OD API's convention (``ymin, xmin, ymax, xmax``) only where they enter its evaluators.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from maskdetect.detections import Detections, box_iou
from maskdetect.errors import ConfigError, DataError
from maskdetect.fileio import atomic_path, atomic_write_json
from maskdetect.infer.bundle import ExportBundle, OperatingPoint, model_tag, operating_point_key
from maskdetect.train.run import Run

logger = logging.getLogger(__name__)


@dataclass
class ImageResult:
    """Ground truth (confidence 1) and detections of one image."""

    image_id: str
    truth: Detections
    found: Detections


def iter_examples(files: list[str]) -> Iterator[tuple[str, np.ndarray, Detections]]:
    """(image id, RGB uint8 image, ground truth) for every record, decoded by the OD API's own TfExampleDecoder
    (as training sees them)."""
    import tensorflow as tf
    from object_detection.core import standard_fields as fields
    from object_detection.data_decoders.tf_example_decoder import TfExampleDecoder

    decoder = TfExampleDecoder()
    decode = tf.function(decoder.decode)
    for index, record in enumerate(tf.data.TFRecordDataset(files)):
        tensors = decode(record)
        image = tensors[fields.InputDataFields.image].numpy()
        height, width = image.shape[:2]
        boxes = tensors[fields.InputDataFields.groundtruth_boxes].numpy()
        classes = tensors[fields.InputDataFields.groundtruth_classes].numpy().astype(np.int64) - 1  # 1-based ids
        truth = Detections.from_normalized(boxes, np.ones(len(boxes), np.float32), classes, (width, height))
        source = tensors[fields.InputDataFields.source_id].numpy().decode() or str(index)
        yield f"{index:05d}:{source}", image, truth


def checkpoint_detector(run: Run, checkpoint: str | None = None, image_size: int | None = None
                        ) -> tuple[Callable[[np.ndarray], Detections], str]:
    """A function RGB image -> :class:`Detections` (all of them, no threshold) from the run's newest checkpoint,
    run at `image_size` (default: the size it was trained at)."""
    import tensorflow as tf
    from object_detection.builders import model_builder

    from maskdetect.train.pipeline import at_image_size

    model = model_builder.build(model_config=at_image_size(run.pipeline, image_size).model, is_training=False)
    checkpoint = checkpoint or run.require_checkpoint()
    tf.train.Checkpoint(model=model).restore(checkpoint).expect_partial()

    @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.uint8)])
    def detect(image):
        preprocessed, shapes = model.preprocess(tf.cast(image, tf.float32))
        return model.postprocess(model.predict(preprocessed, shapes), shapes)

    def run_one(image: np.ndarray) -> Detections:
        out = detect(image[None])
        n = int(out["num_detections"][0])
        return Detections.from_normalized(out["detection_boxes"][0].numpy(), out["detection_scores"][0].numpy(),
                                          out["detection_classes"][0].numpy().astype(np.int64),
                                          (image.shape[1], image.shape[0]), num_detections=n)

    return run_one, checkpoint


def export_detector(path: str | Path | ExportBundle, classifier: str | Path | None = None
                    ) -> Callable[[np.ndarray], Detections]:
    """An exported model (SavedModel or TFLite of any precision) as the predictor loads it, with nothing
    filtered (no threshold, no cross-class NMS); with a second-stage `classifier`, as ``predict`` runs them
    (one box per face, merged by cross-class NMS, then re-classified)."""
    from maskdetect.infer.predictor import Predictor

    return Predictor(path, threshold=0.0, cross_class_nms=classifier is not None, classifier=classifier,
                     warmup=False).predict


def collect(detector: Callable[[np.ndarray], Detections], files: list[str], progress: bool = True
            ) -> list[ImageResult]:
    from tqdm.auto import tqdm

    results = [ImageResult(image_id, truth, detector(image)) for image_id, image, truth in
               tqdm(iter_examples(files), desc="evaluate", unit="img", disable=not progress)]
    if not results:
        raise DataError(f"{files}: no records to evaluate")
    return results


def compute_metrics(results: list[ImageResult], class_names: list[str], iou_threshold: float = 0.5):
    """COCO metrics and per-class AP@``iou_threshold`` from the OD API's evaluators, plus the PR curves.

    The OD API takes pixel boxes as ``ymin, xmin, ymax, xmax``; COCO takes 1-based category ids, the PASCAL
    evaluation (``ObjectDetectionEvaluation``, which also keeps the curves) 0-based class indices.
    """
    from object_detection.core import standard_fields as fields
    from object_detection.metrics import coco_evaluation
    from object_detection.utils import object_detection_evaluation

    coco = coco_evaluation.CocoDetectionEvaluator([{"id": i, "name": name} for i, name in enumerate(class_names, 1)])
    pascal = object_detection_evaluation.ObjectDetectionEvaluation(len(class_names),
                                                                   matching_iou_threshold=iou_threshold)
    faces = object_detection_evaluation.ObjectDetectionEvaluation(1, matching_iou_threshold=iou_threshold)
    gt_key, det_key = fields.InputDataFields, fields.DetectionResultFields
    for r in results:
        gt_yxyx, found_yxyx = r.truth.xyxy[:, [1, 0, 3, 2]], r.found.xyxy[:, [1, 0, 3, 2]]
        coco.add_single_ground_truth_image_info(r.image_id, {
            gt_key.groundtruth_boxes: gt_yxyx, gt_key.groundtruth_classes: r.truth.class_id + 1})
        coco.add_single_detected_image_info(r.image_id, {
            det_key.detection_boxes: found_yxyx, det_key.detection_scores: r.found.confidence,
            det_key.detection_classes: r.found.class_id + 1})
        pascal.add_single_ground_truth_image_info(r.image_id, gt_yxyx, r.truth.class_id,
                                                  np.zeros(len(r.truth), bool))
        pascal.add_single_detected_image_info(r.image_id, found_yxyx, r.found.confidence, r.found.class_id)
        faces.add_single_ground_truth_image_info(r.image_id, gt_yxyx, np.zeros(len(r.truth), int),
                                                 np.zeros(len(r.truth), bool))
        faces.add_single_detected_image_info(r.image_id, found_yxyx, r.found.confidence,
                                             np.zeros(len(r.found), int))
    coco_metrics = {k: float(v) for k, v in coco.evaluate().items()}
    pascal_metrics = pascal.evaluate()
    per_class = {}
    curves = {}
    for index, name in enumerate(class_names):
        ap = float(pascal_metrics.average_precisions[index])
        per_class[name] = None if math.isnan(ap) else ap
        precision, recall = pascal_metrics.precisions[index], pascal_metrics.recalls[index]
        if isinstance(precision, np.ndarray):
            curves[name] = (recall, precision)
    found = [v for v in per_class.values() if v is not None]
    gt_counts = {name: int(sum((r.truth.class_id == i).sum() for r in results)) for i, name in enumerate(class_names)}
    return {
        "mAP@0.5": float(np.mean(found)) if found else None,
        "AP@0.5": per_class,
        "class_agnostic_AP@0.5": float(faces.evaluate().mean_ap),  # every box one class: localisation alone
        "coco": coco_metrics,
        "num_images": len(results),
        "num_groundtruth": gt_counts,
    }, curves


def operating_point(results: list[ImageResult], class_names: list[str], split: str, *, nms_iou: float | None,
                    second_stage: bool = False, iou_threshold: float = 0.5) -> OperatingPoint | None:
    """The single score threshold, over all classes, that maximises micro-F1 on `results`: a detection is a true
    positive when it matches a ground-truth face of its class at IoU >= `iou_threshold` (the OD API's PASCAL
    matching, as for AP), and precision, recall and F1 there. Detections are first merged across classes by NMS at
    `nms_iou` as ``predict`` does (None: they already are, e.g. by the second stage). Thresholding commutes with
    that NMS and with the second stage (whose scores never exceed the detector's), so the point holds for
    ``Predictor(threshold=point.threshold)``. None when nothing is found right at any threshold."""
    from object_detection.utils import object_detection_evaluation

    matching = object_detection_evaluation.ObjectDetectionEvaluation(len(class_names),
                                                                     matching_iou_threshold=iou_threshold)
    for r in results:
        found = r.found.with_cross_class_nms(nms_iou) if nms_iou else r.found
        matching.add_single_ground_truth_image_info(r.image_id, r.truth.xyxy[:, [1, 0, 3, 2]], r.truth.class_id,
                                                    np.zeros(len(r.truth), bool))
        matching.add_single_detected_image_info(r.image_id, found.xyxy[:, [1, 0, 3, 2]], found.confidence,
                                                found.class_id)
    per_class = [(np.concatenate(s), np.concatenate(t)) for s, t in
                 zip(matching.scores_per_class, matching.tp_fp_labels_per_class) if s]
    total = float(matching.num_gt_instances_per_class.sum())
    if not per_class or not total:
        return None
    scores = np.concatenate([s for s, _ in per_class])
    correct = np.concatenate([t for _, t in per_class]).astype(bool)
    order = np.argsort(-scores, kind="stable")
    scores, correct = scores[order], correct[order]
    tp, fp = np.cumsum(correct), np.cumsum(~correct)
    last = np.r_[scores[1:] != scores[:-1], True]  # a threshold keeps every detection at or above it
    scores, tp, fp = scores[last], tp[last], fp[last]
    f1 = 2 * tp / (tp + fp + total)
    best = int(np.argmax(f1))  # the first maximum: the highest threshold among equals
    if not tp[best]:
        return None
    return OperatingPoint(rule=f"max F1 on {split}", split=split, threshold=float(scores[best]),
                          precision=round(float(tp[best] / (tp[best] + fp[best])), 4),
                          recall=round(float(tp[best] / total), 4), f1=round(float(f1[best]), 4),
                          second_stage=second_stage)


def confusion_matrix(results: list[ImageResult], num_classes: int, *, score_threshold: float = 0.5,
                     iou_threshold: float = 0.5) -> np.ndarray:
    """Rows: true class (last row: background, i.e. false positives). Columns: predicted class (last column:
    missed). Detections at or above `score_threshold` are matched greedily to ground truth by IoU."""
    matrix = np.zeros((num_classes + 1, num_classes + 1), np.int64)
    for r in results:
        kept = r.found[r.found.confidence >= score_threshold]
        classes, truth_classes = kept.class_id, r.truth.class_id
        order = np.argsort(-kept.confidence)
        matched_gt = np.zeros(len(r.truth), bool)
        ious = box_iou(kept.xyxy, r.truth.xyxy) if len(r.truth) else None
        for d in order:
            best = -1
            if ious is not None:
                candidates = np.where(~matched_gt & (ious[d] >= iou_threshold))[0]
                if len(candidates):
                    best = candidates[np.argmax(ious[d, candidates])]
            if best >= 0:
                matched_gt[best] = True
                matrix[truth_classes[best], classes[d]] += 1
            else:
                matrix[num_classes, classes[d]] += 1
        for g in np.where(~matched_gt)[0]:
            matrix[truth_classes[g], num_classes] += 1
    return matrix


def plot_pr_curves(curves: dict, metrics: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    for name, (recall, precision) in curves.items():
        ap = metrics["AP@0.5"].get(name)
        ax.plot(recall, precision, label=f"{name} (AP@0.5 {ap:.3f})" if ap is not None else name)
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
           title=f"Precision-recall at IoU 0.5 — mAP@0.5 {metrics['mAP@0.5'] or 0:.3f}")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    return path


def plot_confusion(matrix: np.ndarray, class_names: list[str], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(class_names) + ["background"]
    cols = list(class_names) + ["missed"]
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix (score ≥ 0.5, IoU ≥ 0.5)")
    limit = matrix.max() / 2 if matrix.size else 0
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(value), ha="center", va="center", color="white" if value > limit else "black")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    return path


def evaluate(run_dir: Run | str | Path, *, split: str = "val", export: bool | str | Path = False,
             classifier: bool | str | Path = False, checkpoint: str | None = None, image_size: int | None = None,
             progress: bool = True) -> dict:
    """Evaluate the run's newest checkpoint on `split` or, with `export`, an export of it: True for its
    SavedModel, or a path (a SavedModel, a ``.tflite`` of any precision, an export folder), scored alike.
    `classifier` (exports only): the second stage too, True for the ``classifier.tflite`` beside the export, or a
    path. `image_size` (checkpoints only; an export runs at the size it was exported at): run the model at this
    input size instead of the one it was trained at (:func:`~maskdetect.train.pipeline.at_image_size`).

    Writes ``metrics-<split>[-<size>px | -export[-<model file's tag>] | -other[-<tag>]].json`` in the run directory
    (``other``: a model that is not the run's own export) and the same-named
    ``plots/<tag>/`` with ``pr_curves.png`` and ``confusion_matrix.png``; returns the metrics, with the operating
    point (:func:`operating_point`). When the export is the run's own (inside its ``export/``), its card gets the
    measured figures (and their change from the checkpoint's, if that was evaluated on the split) and the
    operating point, which ``predict`` then uses by default. Any other model's card is left as it is (the
    bundled model's always): its figures are only in the run, and the log says so.
    """
    from maskdetect.infer.predictor import DEFAULT_NMS_IOU

    run = Run.open(run_dir)
    class_names = run.class_names
    files = run.record_files(split)
    started = time.monotonic()
    tag, evaluated, second, bundle, own = split, "checkpoint", None, None, False
    if image_size is not None and (export is not False or classifier is not False):
        raise ConfigError("--image-size runs a checkpoint at another input size; an export runs at the size it was "
                          "exported at (`maskdetect export RUN_DIR --image-size N`): drop --image-size here")
    if export is not False:
        bundle = ExportBundle.open(run.run_dir if export is True else export)
        if export is True and bundle.kind != "saved_model":
            raise ConfigError(f"{run.saved_model}: no SavedModel; run `maskdetect export {run.run_dir}` first, or pass "
                              f"--export {bundle.model}")
        evaluated, model = bundle.kind, bundle.model
        if classifier is not False:
            second = bundle.classifier if classifier is True else Path(classifier)
            if second is None:
                raise ConfigError(f"{model}: no classifier.tflite beside it; train one with `maskdetect classifier "
                                  f"{run.run_dir}` or pass its path")
        detector, source = export_detector(bundle, second), str(model)
        own = is_own_export(run, bundle)  # another model's figures go under another name, never onto its card
        tag = f"{split}-{'export' if own else 'other'}" + (f"-{model_tag(model)}" if evaluated != "saved_model" else "")
        tag += "-classifier" if second else ""
        if second:
            source += f" + {second}"
    elif classifier is not False:
        raise ConfigError("--classifier scores an export with its second stage: add --export [PATH]")
    else:
        detector, source = checkpoint_detector(run, checkpoint, image_size)
        tag = checkpoint_tag(run, split, image_size)
    results = collect(detector, files, progress)
    metrics, curves = compute_metrics(results, class_names)
    matrix = confusion_matrix(results, len(class_names))
    point = operating_point(results, class_names, split, nms_iou=None if second else DEFAULT_NMS_IOU,
                            second_stage=second is not None)
    plots = run.plots / tag
    metrics.update({
        "split": split, "evaluated": evaluated, "source": source,
        **({"input_size": image_size or run.input_size} if evaluated == "checkpoint" else {}),
        "operating_point": point.to_json() if point else None,
        "confusion_matrix": {"rows_true": class_names + ["background"], "cols_predicted": class_names + ["missed"],
                             "counts": matrix.tolist()},
        "plots": {"pr_curves": str(plot_pr_curves(curves, metrics, plots / "pr_curves.png")),
                  "confusion_matrix": str(plot_confusion(matrix, class_names, plots / "confusion_matrix.png"))},
        "seconds": round(time.monotonic() - started, 2),
    })
    if bundle is not None and not own:
        metrics["card"] = (f"not updated: {bundle.model} is not this run's export ({run.exports}); its figures are "
                           "in this file only")
        logger.warning("%s is not %s's own export: its card is left as it is; the figures go to the run only",
                       bundle.model, run.run_dir)
    path = atomic_write_json(run.metrics_path(tag), metrics)
    metrics["path"] = str(path)
    if own:
        metrics["card"] = str(_record_on_card(run, bundle, split, metrics, point, second))
    logger.info("mAP@0.5 %s, AP@0.5 %s, operating point %s (%s)", metrics["mAP@0.5"], metrics["AP@0.5"],
                metrics["operating_point"], path)
    return metrics


def is_own_export(run: Run, bundle: ExportBundle) -> bool:
    """Whether `bundle` is one of `run`'s exports (links resolved), whose card `evaluate` may update."""
    model, exports = bundle.model.resolve(), run.exports.resolve()
    return not bundle.is_bundled and (model == exports or exports in model.parents)


def checkpoint_tag(run: Run, split: str, image_size: int | None) -> str:
    """The metrics tag of the run's checkpoint scored on `split` at `image_size`: the split, with ``-<size>px``
    when that is not the size it was trained at."""
    return f"{split}-{image_size}px" if image_size and image_size != run.input_size else split


def _record_on_card(run: Run, bundle: ExportBundle, split: str, metrics: dict, point: OperatingPoint | None,
                    second: Path | None) -> Path:
    """Add the measured figures of one of the run's exports to its card (and their change from the checkpoint's on
    the same split at the same input size, when ``metrics-<split>[-<size>px].json`` exists), and the operating
    point: as ``operating_point`` when measured the way ``predict`` runs the model by default (with the second
    stage beside it, if there is one), else under :func:`~maskdetect.infer.bundle.operating_point_key`."""
    card = bundle.card
    measured = {"mAP@0.5": metrics["mAP@0.5"], "AP@0.5": metrics["AP@0.5"], "num_images": metrics["num_images"]}
    reference = run.metrics().get(f"metrics-{checkpoint_tag(run, split, card.get('input_size'))}")
    if reference and reference.get("mAP@0.5") is not None and metrics["mAP@0.5"] is not None:
        measured["mAP@0.5_change_from_checkpoint"] = round(metrics["mAP@0.5"] - reference["mAP@0.5"], 4)
    changes = {"measured": {**card.get("measured", {}), split + ("_with_classifier" if second else ""): measured}}
    if point is not None:
        beside = bundle.classifier  # predict runs the classifier beside the model by default, if there is one
        as_default = (second.resolve() == beside.resolve()) if second and beside else (second is None and beside is None)
        changes["operating_point" if as_default else operating_point_key(second is not None)] = point.to_json()
    return bundle.update_card(**changes)


def watch(run_dir: Run | str | Path, *, split: str = "val", image_size: int | None = None,
          timeout_s: float = 3600.0) -> Iterator[dict]:
    """Evaluate every new checkpoint as training (in another process) writes it; stop after the checkpoint of
    the config's last step, or when no new checkpoint came for `timeout_s`. Also logs TensorBoard scalars."""
    import tensorflow as tf

    run = Run.open(run_dir)
    last_step = run.pipeline.train_config.num_steps
    name = f"eval_{split}" + (f"_{image_size}px" if image_size else "")
    writer = tf.summary.create_file_writer(str(run.tensorboard / name))
    for checkpoint in tf.train.checkpoints_iterator(str(run.checkpoints), timeout=timeout_s):
        step = int(checkpoint.rsplit("-", 1)[-1])
        metrics = evaluate(run, split=split, checkpoint=checkpoint, image_size=image_size, progress=False)
        metrics["step"] = step
        with writer.as_default():
            if metrics["mAP@0.5"] is not None:
                tf.summary.scalar("mAP@0.5", metrics["mAP@0.5"], step=step)
            for name, ap in metrics["AP@0.5"].items():
                if ap is not None:
                    tf.summary.scalar(f"AP@0.5/{name}", ap, step=step)
        writer.flush()
        yield metrics
        if step >= last_step:
            return

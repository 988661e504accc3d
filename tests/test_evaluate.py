"""Evaluation (maskdetect.train.evaluate): the metric code on hand-made Detections, and the shared tiny run, whose
checkpoint and export give the same metrics, plots and JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

from maskdetect.detections import Detections
from maskdetect.train.evaluate import ImageResult, compute_metrics, confusion_matrix

NAMES = ["with_mask", "without_mask", "mask_weared_incorrect"]


def _result(image_id, truth_xyxy, truth_classes, found_xyxy, found_scores, found_classes):
    truth = Detections(xyxy=np.array(truth_xyxy, np.float32).reshape(-1, 4), confidence=np.ones(len(truth_classes)),
                       class_id=truth_classes)
    found = Detections(xyxy=np.array(found_xyxy, np.float32).reshape(-1, 4), confidence=found_scores,
                       class_id=found_classes)
    return ImageResult(image_id, truth, found)


def test_metrics_and_confusion_matrix_on_detections():
    results = [
        # a: both faces found with the right class, plus a confident box on the background
        _result("a", [[10, 10, 50, 60], [100, 20, 140, 70]], [0, 1],
                [[11, 10, 50, 61], [100, 21, 141, 70], [200, 200, 220, 230]], [0.9, 0.8, 0.7], [0, 1, 0]),
        # b: the mask worn incorrectly is called without_mask; the second face is missed
        _result("b", [[30, 30, 90, 100], [150, 40, 190, 90]], [2, 0], [[31, 29, 90, 100]], [0.6], [1]),
    ]
    metrics, curves = compute_metrics(results, NAMES)
    assert metrics["num_groundtruth"] == {"with_mask": 2, "without_mask": 1, "mask_weared_incorrect": 1}
    assert metrics["AP@0.5"]["without_mask"] == pytest.approx(1.0)   # its one face, found first
    assert metrics["AP@0.5"]["mask_weared_incorrect"] == pytest.approx(0.0)
    assert 0.0 < metrics["AP@0.5"]["with_mask"] < 1.0                 # one of two found, after a false positive
    assert metrics["mAP@0.5"] == pytest.approx(np.mean(list(metrics["AP@0.5"].values())))
    # every box one class: three of four faces found, the third-ranked box a false positive
    assert metrics["class_agnostic_AP@0.5"] == pytest.approx(0.25 + 0.25 + 0.25 * 0.75)
    assert "DetectionBoxes_Precision/mAP" in metrics["coco"] and set(curves) <= set(NAMES)
    matrix = confusion_matrix(results, len(NAMES))
    assert matrix.tolist() == [[1, 0, 0, 1],   # with_mask: one found, one missed
                               [0, 1, 0, 0],   # without_mask: found
                               [0, 1, 0, 0],   # incorrect: called without_mask
                               [1, 0, 0, 0]]   # background: the false positive, called with_mask


@pytest.mark.slow
def test_evaluate_checkpoint_and_export_agree(tiny_export):
    from maskdetect.train.evaluate import evaluate

    ckpt = evaluate(tiny_export.run_dir, progress=False)
    exported = evaluate(tiny_export.run_dir, export=True, progress=False)
    assert ckpt["evaluated"] == "checkpoint" and exported["evaluated"] == "saved_model"
    assert ckpt["num_images"] == exported["num_images"] > 0
    for name in ("with_mask", "without_mask", "mask_weared_incorrect"):
        a, b = ckpt["AP@0.5"][name], exported["AP@0.5"][name]
        assert (a is None) == (b is None)
        if a is not None:
            assert abs(a - b) <= 0.005
    assert abs(ckpt["coco"]["DetectionBoxes_Precision/mAP"] - exported["coco"]["DetectionBoxes_Precision/mAP"]) <= 0.005
    for metrics in (ckpt, exported):
        for png in metrics["plots"].values():
            assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
        assert json.loads(open(metrics["path"]).read())["split"] == "val"
        counts = np.array(metrics["confusion_matrix"]["counts"])
        assert counts[:3].sum() == sum(metrics["num_groundtruth"].values())


def test_evaluate_scores_a_quantized_export_on_the_same_split(tiny_export):
    """`evaluate --export PATH`: an int8 TFLite scored like the checkpoint, its own metrics file and plots, and
    the measured figures (with the change from the checkpoint's) written on its card."""
    from maskdetect.train.evaluate import evaluate

    checkpoint = evaluate(tiny_export.run_dir, progress=False)
    int8 = evaluate(tiny_export.run_dir, export=tiny_export.quantized["int8"], progress=False)
    assert int8["evaluated"] == "tflite" and int8["num_images"] == checkpoint["num_images"]
    assert int8["path"].endswith("metrics-val-export-model-int8.json")
    assert open(int8["plots"]["pr_curves"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    card = json.loads(tiny_export.quantized["int8"].with_name("model-int8.card.json").read_text())
    measured = card["measured"]["val"]
    assert measured["AP@0.5"] == int8["AP@0.5"]
    if checkpoint["mAP@0.5"] is not None and int8["mAP@0.5"] is not None:
        assert measured["mAP@0.5_change_from_checkpoint"] == round(int8["mAP@0.5"] - checkpoint["mAP@0.5"], 4)


def test_the_operating_point_is_the_threshold_of_best_micro_f1():
    """Over all classes, a detection right when its class matches a face's at IoU >= 0.5 (the evaluator's PASCAL
    matching): on the results above, the scores 0.9 and 0.8 are right, 0.7 (background) and 0.6 (wrong class) not,
    of 4 faces; F1 at 0.9, 0.8, 0.7, 0.6 is 2/5, 4/6, 4/7, 4/8."""
    from maskdetect.train.evaluate import operating_point

    results = [
        _result("a", [[10, 10, 50, 60], [100, 20, 140, 70]], [0, 1],
                [[11, 10, 50, 61], [100, 21, 141, 70], [200, 200, 220, 230]], [0.9, 0.8, 0.7], [0, 1, 0]),
        _result("b", [[30, 30, 90, 100], [150, 40, 190, 90]], [2, 0], [[31, 29, 90, 100]], [0.6], [1]),
    ]
    point = operating_point(results, NAMES, "val", nms_iou=0.5)
    assert (point.rule, point.split, point.second_stage) == ("max F1 on val", "val", False)
    assert point.threshold == pytest.approx(0.8) and (point.precision, point.recall) == (1.0, 0.5)
    assert point.f1 == pytest.approx(0.6667)
    # a second box of another class on the first face: a false positive, unless merged by cross-class NMS first
    results[0].found = Detections(xyxy=np.vstack([results[0].found.xyxy, [[12, 11, 50, 60]]]).astype(np.float32),
                                  confidence=np.array([0.9, 0.8, 0.7, 0.85], np.float32),
                                  class_id=np.array([0, 1, 0, 2]))
    assert operating_point(results, NAMES, "val", nms_iou=0.5).threshold == pytest.approx(0.8)
    assert operating_point(results, NAMES, "val", nms_iou=None).precision < 1.0
    assert operating_point([_result("c", [[0, 0, 9, 9]], [0], np.zeros((0, 4)), [], [])], NAMES, "val",
                           nms_iou=0.5) is None  # nothing found: no point


@pytest.mark.slow
def test_evaluate_writes_the_operating_point_on_the_runs_own_export_only(tiny_export, tmp_path):
    """`evaluate RUN --export PATH`: the run's own export's card gets the max-F1 operating point, which the predictor
    then takes as its default threshold; another model's card (the bundled model's above all) is left byte for
    byte, and the figures go to the run, saying so."""
    import shutil

    from maskdetect.infer.bundle import ExportBundle
    from maskdetect.infer.predictor import Predictor, bundled_model
    from maskdetect.train.evaluate import evaluate

    run = shutil.copytree(tiny_export.run_dir, tmp_path / "run", ignore=shutil.ignore_patterns(
        "saved_model", "checkpoint", "model-*", "metrics-*", "plots", "tensorboard"))
    model = run / "export" / "model.tflite"
    metrics = evaluate(run, export=model, progress=False)
    card = json.loads(model.with_name("model.card.json").read_text())
    point = metrics["operating_point"]
    if point is None:  # a 6-step model may find no face right at any threshold: then no default is written
        assert "operating_point" not in card
    else:
        assert card["operating_point"] == point and point["rule"] == "max F1 on val" and point["second_stage"] is False
        assert 0 < point["f1"] <= 1 and Predictor(model, warmup=False).threshold == point["threshold"]
    assert metrics["card"] == str(model.with_name("model.card.json")) and card["measured"]["val"]["num_images"] > 0

    bundled = ExportBundle.open(bundled_model())
    before = {p: p.read_bytes() for p in bundled.folder.iterdir()}
    other = evaluate(run, export=bundled_model(), progress=False)
    assert {p: p.read_bytes() for p in bundled.folder.iterdir()} == before  # nothing written in the package
    assert other["card"].startswith("not updated") and "not this run's export" in other["card"]
    assert json.loads(open(other["path"]).read())["card"] == other["card"]
    assert other["path"].endswith("/run/metrics-val-other-model-int8.json")  # not the name of the run's own int8
    elsewhere = shutil.copytree(run / "export", tmp_path / "elsewhere")  # a copy outside the run: its card too
    card_bytes = (elsewhere / "model.card.json").read_bytes()
    evaluate(run, export=elsewhere / "model.tflite", progress=False)
    assert (elsewhere / "model.card.json").read_bytes() == card_bytes

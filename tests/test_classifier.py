"""The second stage: face crops, the crop classifier's training and export (maskdetect.train.classifier), its runtime
(maskdetect.infer.classify) and where it plugs in (Predictor, evaluate, the CLI)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import REPO
from maskdetect.errors import ConfigError
from maskdetect.infer.bundle import ExportBundle
from maskdetect.infer.classify import face_crops
from maskdetect.train.classifier import jittered_boxes


def test_face_crops_are_centred_squares_scaled_by_the_margin():
    image = np.zeros((100, 200, 3), np.uint8)
    image[40:60, 90:110] = (255, 0, 0)  # a 20 px red "face"
    image[0:10, 0:10] = (0, 255, 0)     # a green one in the corner
    crops = face_crops(image, np.array([[90, 40, 110, 60], [0, 0, 10, 10]]), size=32, margin=2.0)
    assert crops.shape == (2, 32, 32, 3) and crops.dtype == np.uint8
    red = crops[0, :, :, 0] > 128
    assert red[16, 16] and not red[2, 2] and not red[29, 29]  # the face fills the middle half: margin 2
    assert 12 <= red.sum() ** 0.5 <= 20
    assert (crops[1, 16, 16] == (0, 255, 0)).all() and (crops[1, 0, 0] == (0, 255, 0)).all()  # border repeated
    assert face_crops(image, np.zeros((0, 4)), 32, 2.0).shape == (0, 32, 32, 3)


def test_jittered_boxes_keep_each_original_first_and_move_the_copies_a_little():
    boxes = np.array([[10, 10, 30, 50], [100, 100, 120, 120]], np.float32)
    out = jittered_boxes(boxes, 4, np.random.default_rng(0))
    assert out.shape == (8, 4)
    assert np.array_equal(out[0], boxes[0]) and np.array_equal(out[4], boxes[1])
    centres = (out[:, :2] + out[:, 2:]) / 2
    assert np.abs(centres[1:4] - centres[0]).max() < 15 and not np.allclose(out[1:4], out[0])
    assert (out[:, 2:] > out[:, :2]).all()


def test_the_classifier_is_found_beside_a_tflite_file_a_saved_model_or_in_an_export_folder(tmp_path):
    export = tmp_path / "run" / "export"
    (export / "saved_model").mkdir(parents=True)
    (export / "saved_model" / "saved_model.pb").write_bytes(b"")
    (export / "model.tflite").write_bytes(b"")
    assert ExportBundle.open(export / "model.tflite").classifier is None
    (export / "classifier.tflite").write_bytes(b"")
    for model in (export / "model.tflite", export / "saved_model", export):
        assert ExportBundle.open(model).classifier == export / "classifier.tflite"
    (tmp_path / "run" / "pipeline.config").write_text("")
    (tmp_path / "run" / "classifier.tflite").write_bytes(b"")  # not beside the model: not its second stage
    assert ExportBundle.open(tmp_path / "run").classifier == export / "classifier.tflite"


@pytest.mark.parametrize("option", [{"epochs": 0}, {"jitter": 0}, {"input_size": 8}, {"margin": 0.5},
                                    {"batch_size": 2.5}])
def test_classifier_options_are_checked_before_anything_is_read(option, tmp_path):
    from maskdetect.train.classifier import train_classifier

    with pytest.raises(ConfigError, match=f"classifier {next(iter(option))}="):
        train_classifier(tmp_path / "no-run", **option)


def test_an_ensemble_outputs_the_mean_of_its_members_probabilities():
    from maskdetect.train.classifier import average_models, build_model

    members = [build_model(16, 3) for _ in range(3)]
    crops = np.random.default_rng(0).uniform(0, 255, (5, 16, 16, 3)).astype(np.float32)
    expected = np.mean([member.predict(crops, verbose=0) for member in members], axis=0)
    assert not np.allclose(members[0].predict(crops, verbose=0), expected)  # the members differ
    assert np.allclose(average_models(members, 16).predict(crops, verbose=0), expected, atol=1e-6)


# -- trained on the tiny run ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def classified_run(tiny_export, tmp_path_factory):
    """A copy of the tiny run (so no other test's predictor finds the classifier) with a classifier trained on
    its faces for one epoch at 32 px (one member: test_learning's statistics test, later in this group, reads
    batches drawn after the global seed this leaves; the ensemble's averaging is tested on its own above)."""
    from maskdetect.train.classifier import train_classifier

    run_dir = tmp_path_factory.mktemp("classified") / "run"
    shutil.copytree(tiny_export.run_dir, run_dir)
    path = train_classifier(run_dir, input_size=32, epochs=1, jitter=2, progress=False)
    return run_dir, path


@pytest.mark.slow
def test_the_classifier_is_trained_exported_and_described(classified_run):
    from maskdetect.infer.classify import FaceClassifier

    run_dir, path = classified_run
    assert path == run_dir / "export" / "classifier.tflite" and path.stat().st_size > 10_000
    spec = json.loads(path.with_suffix(".json").read_text())
    assert spec["input_size"] == 32 and spec["classes"] == ["with_mask", "without_mask", "mask_weared_incorrect"]
    assert sum(spec["training"]["faces"].values()) > 50 and spec["training"]["jitter_copies"] == 2
    assert spec["members"] == 1 and spec["training"]["seeds"] == [0] and len(spec["training"]["final_loss"]) == 1
    assert set(spec["val_face_accuracy"]) == set(spec["classes"])
    classifier = FaceClassifier(path)
    image = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    for count in (3, 1, 3, 0):  # the batch follows the number of faces
        p = classifier.probabilities(image, np.tile([[10, 10, 50, 60]], (count, 1)))
        assert p.shape == (count, 3) and np.allclose(p.sum(axis=1), 1, atol=1e-4)
    assert ExportBundle.open(run_dir / "export" / "model.tflite").classifier == path
    assert ExportBundle.open(run_dir / "export" / "saved_model").classifier == path


@pytest.mark.slow
def test_the_predictor_runs_the_classifier_beside_the_export(classified_run):
    from maskdetect.infer.predictor import Predictor
    from maskdetect.infer.sources import read_image

    run_dir, path = classified_run
    image = read_image(sorted((REPO / "sample" / "face-mask" / "images").glob("*.jpg"))[0])
    alone = Predictor(run_dir / "export" / "model.tflite", threshold=0.0, classifier=None)
    both = Predictor(run_dir / "export" / "model.tflite", threshold=0.0)  # "auto": the classifier beside it
    assert alone.classifier is None and both.classifier.path == path
    merged, refined = alone.predict(image), both.predict(image)
    assert len(refined) == len(merged) > 0  # the same boxes, with the classifier's classes
    assert np.allclose(refined.xyxy, merged.xyxy)
    assert np.array_equal(refined.data["detector_class_id"], merged.class_id)
    assert np.array_equal(refined.data["detector_confidence"], merged.confidence)
    probabilities = both.classifier.probabilities(image, merged.xyxy)
    assert np.array_equal(refined.class_id, probabilities.argmax(axis=1))
    assert np.allclose(refined.confidence, merged.confidence * probabilities.max(axis=1))
    strict = Predictor(run_dir / "export" / "model.tflite", threshold={"with_mask": 1.0, "without_mask": 0.0,
                                                                       "mask_weared_incorrect": 0.0})
    assert 0 not in strict.predict(image).class_id  # thresholds apply to the classifier's classes


@pytest.mark.slow
def test_a_classifier_that_does_not_match_is_refused_with_its_file_named(classified_run, tmp_path):
    from maskdetect.infer.classify import FaceClassifier
    from maskdetect.infer.predictor import Predictor

    run_dir, path = classified_run
    spec = json.loads(path.with_suffix(".json").read_text())
    other = tmp_path / "classifier.tflite"
    shutil.copy(path, other)
    other.with_suffix(".json").write_text(json.dumps({**spec, "classes": ["mask", "no_mask", "bad"]}))
    with pytest.raises(ConfigError, match="differ from the detector's"):
        Predictor(run_dir / "export" / "model.tflite", classifier=other)
    other.with_suffix(".json").write_text(json.dumps({**spec, "input_size": 48}))
    with pytest.raises(ConfigError, match="do not match"):
        FaceClassifier(other)
    other.with_suffix(".json").unlink()
    with pytest.raises(ConfigError, match=r"classifier\.json: missing"):
        FaceClassifier(other)


@pytest.mark.slow
def test_evaluate_scores_an_export_with_its_classifier(classified_run):
    from maskdetect.train.evaluate import evaluate

    run_dir, path = classified_run
    metrics = evaluate(run_dir, export=run_dir / "export" / "model.tflite", classifier=True, progress=False)
    assert metrics["path"].endswith("metrics-val-export-model-classifier.json")
    assert metrics["source"].endswith("classifier.tflite") and metrics["num_images"] > 0
    assert set(metrics["AP@0.5"]) == {"with_mask", "without_mask", "mask_weared_incorrect"}
    card = json.loads((run_dir / "export" / "model.card.json").read_text())
    assert "val_with_classifier" in card["measured"]
    with pytest.raises(ConfigError, match="add --export"):
        evaluate(run_dir, classifier=True, progress=False)

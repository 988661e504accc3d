"""A TFLite export carries its classes and input spec in the model file's own metadata: written without changing
what the model computes, read back without TensorFlow, and enough for a model.tflite copied alone."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import SAMPLE
from maskdetect.errors import ConfigError
import maskdetect.infer.tflite_metadata as tflite_metadata
from maskdetect.infer.bundle import ExportBundle, bundled_model

VALUES = {"classes": ["mask", "no_mask", "mask_below_nose"],
          "input": {"input_size": 384, "letterbox": False, "letterbox_wider_than": 1.5,
                    "scale": [2 / 255] * 3, "offset": [-1.0] * 3}}


@pytest.fixture(scope="module")
def bundled_bytes() -> bytes:
    return bundled_model().read_bytes()


def test_embedded_values_read_back_and_a_second_embed_replaces_the_first(bundled_bytes, tmp_path):
    embedded = tflite_metadata.read(bundled_model())  # the export wrote the sidecars' values into the file too
    sidecar = json.loads((bundled_model().parent / "tflite_input.json").read_text())
    assert embedded["input"] == sidecar and embedded["classes"] == ExportBundle.open(None).class_names
    once = tmp_path / "once.tflite"
    once.write_bytes(tflite_metadata.embed(bundled_bytes, VALUES))
    assert tflite_metadata.read(once) == VALUES
    twice = tmp_path / "twice.tflite"
    twice.write_bytes(tflite_metadata.embed(once.read_bytes(), {**VALUES, "classes": ["x"]}))
    assert tflite_metadata.read(twice)["classes"] == ["x"]
    assert abs(twice.stat().st_size - once.stat().st_size) < 64  # replaced, not added


def test_the_model_computes_the_same_with_its_metadata(bundled_bytes, tmp_path):
    from maskdetect.infer.predictor import Predictor
    from maskdetect.infer.sources import read_image

    folder = tmp_path / "export"
    shutil.copytree(bundled_model().parent, folder)
    model = folder / bundled_model().name
    model.write_bytes(tflite_metadata.embed(bundled_bytes, VALUES | {"classes": ["with_mask", "without_mask",
                                                                                 "mask_weared_incorrect"]}))
    image = read_image(sorted((SAMPLE / "images").glob("*.jpg"))[0])
    a = Predictor(bundled_model(), threshold=0.0, classifier=None).predict_raw(image)
    b = Predictor(model, threshold=0.0, classifier=None).predict_raw(image)
    assert len(a) == len(b) > 0
    assert np.array_equal(a.xyxy, b.xyxy) and np.array_equal(a.confidence, b.confidence)


def test_a_model_file_alone_runs_from_its_own_metadata(bundled_bytes, tmp_path):
    """No label map, input spec or card beside it: the classes and the input (here a letterbox ratio) come from
    the file; a file without the entry falls back to the defaults, as before."""
    from maskdetect.infer.predictor import Predictor

    alone = tmp_path / "alone" / "model.tflite"
    alone.parent.mkdir()
    alone.write_bytes(tflite_metadata.embed(bundled_bytes, VALUES))
    bundle = ExportBundle.open(alone)
    assert bundle.class_names == VALUES["classes"]
    assert (bundle.input.size, bundle.input.letterbox_wider_than) == (384, 1.5)
    predictor = Predictor(alone, threshold=0.5, classifier=None)
    assert predictor.class_names == VALUES["classes"]
    assert predictor.letterboxes(1280, 720) and not predictor.letterboxes(640, 480)
    plain = tmp_path / "plain" / "model.tflite"
    plain.parent.mkdir()
    plain.write_bytes(tflite_metadata.remove(bundled_bytes))
    assert tflite_metadata.read(plain) is None
    assert ExportBundle.open(plain).input.letterbox_wider_than is None


def test_a_sidecar_beside_the_model_still_wins(bundled_bytes, tmp_path):
    """Exports keep writing tflite_input.json and label_map.pbtxt (older readers and other tools read them)."""
    folder = tmp_path / "export"
    shutil.copytree(bundled_model().parent, folder)
    model = folder / bundled_model().name
    model.write_bytes(tflite_metadata.embed(bundled_bytes, VALUES))
    bundle = ExportBundle.open(model)
    sidecar = json.loads((folder / "tflite_input.json").read_text())
    assert bundle.input.size == sidecar["input_size"] and bundle.class_names[0] == "with_mask"


def test_broken_files_and_entries_are_named(bundled_bytes, tmp_path):
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a model at all")
    assert tflite_metadata.read(junk) is None  # no metadata: the interpreter names the broken file when loading
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(tflite_metadata.embed(bundled_bytes, {"classes": ["a"]}))
    with pytest.raises(ConfigError, match="bad.tflite: malformed maskdetect metadata .no input"):
        tflite_metadata.read(bad)

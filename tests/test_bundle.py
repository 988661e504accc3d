"""The export bundle (maskdetect.infer.bundle): which model a path means, the four typed errors, the sidecars, the
card and its operating point; the bundled model is read only. Fast: files made here, and the bundled TFLite model."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import maskdetect
from maskdetect.errors import (AmbiguousModelFolderError, ConfigError, EmptyModelFolderError, ModelNotFoundError,
                               ModelPathError, OutputError, RunNotExportedError)
from maskdetect.infer.bundle import (BUNDLED_MODEL, ExportBundle, InputSpec, OperatingPoint, bundled_model,
                                     write_input_spec)

PACKAGE = Path(maskdetect.__file__).parent


def _export_folder(root: Path, *names: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        if name == "saved_model":
            (root / "saved_model").mkdir()
            (root / "saved_model" / "saved_model.pb").write_bytes(b"")
        else:
            (root / name).write_bytes(b"")
    return root


def test_a_path_means_one_model(tmp_path):
    export = _export_folder(tmp_path / "run" / "export", "saved_model", "model.tflite", "classifier.tflite")
    assert (ExportBundle.open(export).kind, ExportBundle.open(export).model) == ("saved_model", export / "saved_model")
    assert ExportBundle.open(export / "saved_model").model == export / "saved_model"
    assert ExportBundle.open(export / "saved_model" / "saved_model.pb").model == export / "saved_model"
    lite = ExportBundle.open(export / "model.tflite")
    assert (lite.kind, lite.folder, lite.card_path) == ("tflite", export, export / "model.card.json")
    assert ExportBundle.open(export).card_path == export / "model_card.json"
    one = _export_folder(tmp_path / "lite", "model-int8.tflite", "classifier.tflite")  # the second stage is no model
    assert ExportBundle.open(one).model == one / "model-int8.tflite"
    (tmp_path / "run" / "pipeline.config").write_text("")
    through_run = ExportBundle.open(tmp_path / "run")
    assert through_run.model == export / "saved_model" and through_run.run_dir == tmp_path / "run"
    onnx = ExportBundle.open(_export_folder(tmp_path / "onnx", "model.onnx"))  # run: tests/test_onnx_model.py
    assert (onnx.kind, onnx.card_path.name) == ("onnx", "model-onnx.card.json")  # not model.tflite's card


@pytest.mark.parametrize("case, error, fix", [
    ("missing", ModelNotFoundError, "no such file or folder"),
    ("empty", EmptyModelFolderError, "the folder is empty"),
    ("no model", EmptyModelFolderError, r"holds no model .*found notes\.txt"),
    ("run", RunNotExportedError, r"run `maskdetect export .*run` first"),
    ("run, empty export", RunNotExportedError, r"run `maskdetect export .*run` first"),
    ("two models", AmbiguousModelFolderError, r"holds 2 models \(model-int8\.tflite, model\.tflite\); pass the file"),
    ("not a model", ModelPathError, "not a model file"),
])
def test_the_four_model_folder_errors_each_say_the_fix(tmp_path, case, error, fix):
    if case == "run, empty export":
        _export_folder(tmp_path / "run" / "export", "label_map.pbtxt")
    path = {"missing": lambda: tmp_path / "nothing-here",
            "empty": lambda: _export_folder(tmp_path / "empty"),
            "no model": lambda: _export_folder(tmp_path / "other", "notes.txt"),
            "run": lambda: _export_folder(tmp_path / "run", "pipeline.config", "data_manifest.json"),
            "run, empty export": lambda: _export_folder(tmp_path / "run", "pipeline.config"),
            "two models": lambda: _export_folder(tmp_path / "two", "model.tflite", "model-int8.tflite"),
            "not a model": lambda: _export_folder(tmp_path / "x", "notes.txt") / "notes.txt"}[case]()
    with pytest.raises(error, match=fix) as caught:
        ExportBundle.open(path)
    assert isinstance(caught.value, ConfigError) and str(path) in str(caught.value)  # the CLI prints it in one line


def test_the_input_spec_card_and_operating_point_are_read_from_the_sidecars(tmp_path):
    export = _export_folder(tmp_path / "export", "model.tflite")
    bundle = ExportBundle.open(export)
    assert bundle.input == InputSpec(None) and bundle.card == {} and bundle.operating_point is None
    write_input_spec(export, InputSpec(320, True, (0.1, 0.2, 0.3), (-1.0, -2.0, -3.0)))
    assert ExportBundle.open(export).input == InputSpec(320, True, (0.1, 0.2, 0.3), (-1.0, -2.0, -3.0))
    point = OperatingPoint("max F1 on val", "val", 0.42, 0.8, 0.7, 0.7467, second_stage=False)
    (export / "model.card.json").write_text('{"fine_tuned_from": null, "classifier": "c.tflite"}')
    bundle = ExportBundle.open(export)
    bundle.update_card(classifier=None)  # removes only what it names: the card's own None fields stay
    assert bundle.card == {"fine_tuned_from": None}
    bundle.update_card(classes=["a", "b"], operating_point=point.to_json(), backbone={"source": "wheel"})
    again = ExportBundle.open(export / "model.tflite")
    assert again.operating_point == point and again.backbone == {"source": "wheel"}
    assert again.class_names == ["a", "b"]  # no label map: the card's classes
    assert again.operating_point_for(second_stage=False) == point and again.operating_point_for(True) is None
    bundle.update_card(operating_point_with_classifier={**point.to_json(), "threshold": 0.3, "second_stage": True})
    assert ExportBundle.open(export).operating_point_for(True).threshold == 0.3
    (export / "tflite_input.json").write_text('{"input_size": 320, "scale": [1, 2]}')
    with pytest.raises(ConfigError, match="tflite_input.json: malformed"):
        ExportBundle.open(export).input
    bundle.update_card(operating_point={"rule": "x", "split": "val", "threshold": 3})
    with pytest.raises(ConfigError, match=r"threshold 3 is not in \[0, 1\]"):
        ExportBundle.open(export).operating_point


def test_input_files_are_every_file_read_for_the_model(tmp_path):
    export = _export_folder(tmp_path / "export", "model-int8.tflite", "model-int8.card.json", "label_map.pbtxt",
                            "tflite_input.json", "classifier.tflite", "classifier.json", "notes.txt")
    (export / "label_map.pbtxt").write_text('item { id: 1 name: "a" }\n')
    bundle = ExportBundle.open(export)
    names = {p.name for p in bundle.input_files()}
    assert names == {"model-int8.tflite", "model-int8.card.json", "label_map.pbtxt", "tflite_input.json",
                     "classifier.tflite", "classifier.json"}
    assert {p.name for p in bundle.input_files(classifier=None)} == names - {"classifier.tflite", "classifier.json"}
    other = _export_folder(tmp_path / "mine", "c.tflite", "c.json")
    assert {other / "c.tflite", other / "c.json"} <= set(bundle.input_files(classifier=other / "c.tflite"))
    assert set(bundle.guarded_inputs().values()) == set(bundle.input_files())


def test_the_bundled_model_is_read_only():
    bundle = ExportBundle.open(None)
    assert bundle.model == bundled_model() and bundle.is_bundled and bundle.folder == BUNDLED_MODEL
    before = bundle.card_path.read_bytes()
    with pytest.raises(OutputError, match="read only"):
        bundle.update_card(operating_point={"rule": "max F1 on val", "split": "val", "threshold": 0.1})
    assert bundle.card_path.read_bytes() == before
    assert bundle.input.size == 384 and bundle.classifier == BUNDLED_MODEL / "classifier.tflite"


def test_the_predictor_reads_its_default_threshold_from_the_card(tmp_path):
    """The operating point on the card is `Predictor`'s default threshold; an explicit one overrides it; without
    one, 0.5. (The bundled TFLite model, copied: its own card is never written.)"""
    from maskdetect.infer.predictor import DEFAULT_THRESHOLD, Predictor

    bundled = ExportBundle.open(None).operating_point  # the bundled model's own, chosen on val with its 2nd stage
    assert bundled.rule == "max F1 on val" and bundled.second_stage and 0.05 < bundled.threshold < 0.95
    assert Predictor(warmup=False).threshold == bundled.threshold
    copy = Path(shutil.copytree(BUNDLED_MODEL, tmp_path / "model"))
    card = copy / "model-int8.card.json"
    card.write_text(json.dumps({k: v for k, v in json.loads(card.read_text()).items()
                                if not k.startswith("operating_point")}))
    assert Predictor(copy, warmup=False).threshold == DEFAULT_THRESHOLD
    bundle = ExportBundle.open(copy)
    bundle.update_card(operating_point=OperatingPoint("max F1 on val", "val", 0.71, 0.9, 0.6, 0.72).to_json())
    predictor = Predictor(copy, warmup=False)
    assert predictor.threshold == 0.71 and "max F1 on val" in predictor.threshold_source
    image = sorted((maskdetect_root() / "sample" / "face-mask" / "images").glob("*.jpg"))[0]
    assert (predictor.predict(image).confidence >= 0.71).all()
    assert Predictor(copy, threshold=0.3, warmup=False).threshold == 0.3
    assert Predictor(copy, class_thresholds={"without_mask": 0.2}, warmup=False).threshold == {0: 0.71, 1: 0.2,
                                                                                              2: 0.71}
    # measured with the second stage, it is not the detector's alone
    bundle.update_card(operating_point={**bundle.card["operating_point"], "second_stage": True})
    assert Predictor(copy, classifier=None, warmup=False).threshold == DEFAULT_THRESHOLD


def maskdetect_root() -> Path:
    return PACKAGE.parent


@pytest.mark.parametrize("order", ["rgb", "bgr"])
def test_predict_takes_a_path_a_pil_image_or_an_array_in_a_stated_order(order):
    """A path and a PIL image carry their colour order; an array's is `order` (default rgb, as every maskdetect
    source gives). The same photo in each form gives the same detections."""
    import cv2
    from PIL import Image

    from maskdetect.infer.predictor import Predictor

    predictor = Predictor(threshold=0.5, classifier=None)
    path = sorted((maskdetect_root() / "sample" / "face-mask" / "images").glob("*.jpg"))[0]
    bgr = cv2.imread(str(path))
    reference = predictor.predict(path)
    assert len(reference) > 0
    array = bgr if order == "bgr" else np.ascontiguousarray(bgr[..., ::-1])
    assert predictor.predict(array, order=order) == reference
    assert predictor.predict(Image.open(path)) == reference
    assert predictor.predict(str(path)) == reference
    with pytest.raises(maskdetect.errors.DataError, match="a path is read in its own colour order"):
        predictor.predict(path, order="bgr")
    with pytest.raises(maskdetect.errors.DataError, match="drop the alpha"):
        predictor.predict(np.zeros((8, 8, 4), np.uint8))
    with pytest.raises(maskdetect.errors.DataError, match="order='brg'"):
        predictor.predict(array, order="brg")


def test_letterboxed_and_squeezed_predictions_land_on_the_same_faces_of_a_16_9_frame():
    """A 16:9 camera-shaped frame (a 400x225 photo at 1280x720): squeezed to the model's square, or padded to a
    square (letterboxed), the boxes come back in frame pixels on the same faces."""
    import xml.etree.ElementTree as ET

    import cv2

    from maskdetect.detections import box_iou
    from maskdetect.infer.predictor import Predictor
    from maskdetect.infer.sources import read_image

    sample = maskdetect_root() / "sample" / "face-mask"
    squeezed = Predictor(threshold=0.4, classifier=None, letterbox=False)
    letterboxed = Predictor(threshold=0.4, classifier=None, letterbox=True)
    assert not squeezed.letterboxes(1280, 720) and letterboxed.letterboxes(1280, 720)
    for name, at_least in (("maksssksksss155", 3), ("maksssksksss440", 7)):
        root = ET.parse(sample / "annotations" / f"{name}.xml").getroot()
        image = read_image(sample / "images" / f"{name}.jpg")
        height, width = image.shape[:2]
        frame = cv2.resize(image, (1280, 720))
        truth = np.array([[float(o.find("bndbox").find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")]
                          for o in root.iter("object")], np.float32) * np.array([1280 / width, 720 / height] * 2)
        a, b = squeezed.predict(frame), letterboxed.predict(frame)
        found_a, found_b = box_iou(truth, a.xyxy).max(axis=1) >= 0.5, box_iou(truth, b.xyxy).max(axis=1) >= 0.5
        assert found_a.sum() >= at_least and found_b.sum() >= at_least, (name, found_a, found_b)
        both = found_a & found_b
        same = box_iou(a.xyxy[box_iou(truth[both], a.xyxy).argmax(axis=1)],
                       b.xyxy[box_iou(truth[both], b.xyxy).argmax(axis=1)]).diagonal()
        assert (same >= 0.5).all(), (name, same)


def test_no_inference_module_imports_training():
    for path in sorted((PACKAGE / "infer").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else (
                [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            assert not any(n.startswith("maskdetect.train") for n in names), (path.name, names)


def test_the_export_sidecar_names_are_spelled_in_the_bundle_only():
    """As values in code (docstrings and messages may name them): one module knows the export folder's files."""
    sidecars = {"tflite_input.json", "model_card.json", ".card.json", "classifier.tflite", "classifier.json",
                "model.tflite", "saved_model.pb"}  # ("saved_model" is also the format's name)
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "bundle.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert node.value not in sidecars, (path.relative_to(PACKAGE), node.value, node.lineno)


@pytest.mark.parametrize("case", ["label map by --json", "input spec by --events", "card by --json",
                                  "--classifier's spec by --json", "bundled classifier by --json"])
def test_predict_never_writes_over_a_file_the_model_reads(tmp_path, capsys, case):
    """Every file read for the model (its sidecars, the second stage given by --classifier) is an input to the path
    guard: refused before anything loads, in one line naming the file, and the file unchanged."""
    from maskdetect.cli import main

    copy = Path(shutil.copytree(BUNDLED_MODEL, tmp_path / "model"))
    mine = _export_folder(tmp_path / "mine")
    shutil.copyfile(BUNDLED_MODEL / "classifier.tflite", mine / "c.tflite")
    shutil.copyfile(BUNDLED_MODEL / "classifier.json", mine / "c.json")
    image = sorted((maskdetect_root() / "sample" / "face-mask" / "images").glob("*.jpg"))[0]
    model = ["--model", str(copy / "model-int8.tflite")]  # a file: its folder is not an input by itself
    args, target = {
        "label map by --json": (model + ["--json", str(copy / "label_map.pbtxt")], copy / "label_map.pbtxt"),
        "input spec by --events": (model + ["--track", "--json", str(tmp_path / "a.json"), "--events",
                                            str(copy / "tflite_input.json")], copy / "tflite_input.json"),
        "card by --json": (model + ["--json", str(copy / "model-int8.card.json")], copy / "model-int8.card.json"),
        "--classifier's spec by --json": (model + ["--classifier", str(mine / "c.tflite"), "--json",
                                                   str(mine / "c.json")], mine / "c.json"),
        "bundled classifier by --json": (["--json", str(BUNDLED_MODEL / "classifier.json")],
                                         BUNDLED_MODEL / "classifier.json"),
    }[case]
    if "--events" in args:  # the monitor's files: a video's
        from clips import make_test_clip

        image = make_test_clip(tmp_path / "clip.mp4", frames=3, audio=False)
    before = target.read_bytes()
    assert main(["predict", "--source", str(image), *args]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and target.name in error and "input" in error, error
    assert target.read_bytes() == before


def test_predict_names_the_model_folder_case_and_its_fix(tmp_path, capsys):
    from maskdetect.cli import main

    image = sorted((maskdetect_root() / "sample" / "face-mask" / "images").glob("*.jpg"))[0]
    run = _export_folder(tmp_path / "run", "pipeline.config", "data_manifest.json")
    assert main(["predict", "--model", str(run), "--source", str(image), "--json", str(tmp_path / "a.json")]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and f"run `maskdetect export {run}` first" in error


def test_the_bundled_model_letterboxes_every_frame_as_it_was_trained_and_the_ratio_rule_holds():
    """The bundled model was trained letterboxed (a keep-aspect resizer padded to a square), so its input spec
    letterboxes every frame, 16:9 and 4:3 alike: the default gives exactly what ``letterbox=True`` gives. The
    ratio rule (``export --letterbox R``: letterbox only frames whose longer side is over R x the shorter) is
    checked on the spec itself."""
    import cv2

    from maskdetect.infer.bundle import ExportBundle, InputSpec
    from maskdetect.infer.predictor import Predictor
    from maskdetect.infer.sources import read_image

    bundled = ExportBundle.open(None).input
    assert (bundled.letterbox, bundled.letterbox_wider_than) == (True, None)
    assert all(bundled.letterboxes(w, h) for w, h in ((1280, 720), (720, 1280), (640, 480), (10, 10)))
    spec = InputSpec(320, letterbox_wider_than=1.5)
    assert [spec.letterboxes(w, h) for w, h in ((1280, 720), (720, 1280), (640, 480), (600, 400), (601, 400))] == \
        [True, True, False, False, True]
    assert not InputSpec(320).letterboxes(1280, 720)
    default = Predictor(threshold=0.3, classifier=None)
    image = read_image(maskdetect_root() / "sample" / "face-mask" / "images" / "maksssksksss155.jpg")
    for size in ((1280, 720), (640, 480)):
        frame = cv2.resize(image, size)
        found = default.predict(frame)
        assert found == Predictor(threshold=0.3, classifier=None, letterbox=True).predict(frame)
        squeezed = Predictor(threshold=0.3, classifier=None, letterbox=False).predict(frame)
        assert not np.array_equal(found.xyxy, squeezed.xyxy)
    with pytest.raises(maskdetect.errors.ConfigError, match="letterbox_wider_than"):
        InputSpec.from_json({"scale": [1, 1, 1], "offset": [0, 0, 0], "letterbox_wider_than": 0.5}, Path("x.json"))

"""ONNX exports run by ONNX Runtime (maskdetect/infer/onnx_model.py): the TFLite post-processing op's decoding and
fast NMS, by hand-computed cases; a small ONNX file made here, run through the Predictor with nothing beside it
(classes and input from its own metadata_props); a missing onnxruntime names its pip line. The export of the
tiny model and its agreement with TFLite are in tests/test_export.py (slow)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from maskdetect.compat import ONNX_INSTALL, install_hint
from maskdetect.errors import ConfigError
from maskdetect.infer.onnx_model import OUTPUTS, SSDDecoding, decode_boxes, fast_nms, postprocess

CLASSES = ["with_mask", "without_mask"]


def test_boxes_decode_as_the_tflite_op_does():
    """Centre-size encodings (y, x, h, w divided by the scales 10, 10, 5, 5) on a centre-size anchor."""
    anchor = np.array([[0.5, 0.5, 0.2, 0.4]], np.float32)  # centre (0.5, 0.5), 0.2 high, 0.4 wide
    encoding = np.array([[1.0, -2.0, 5 * np.log(2.0), 0.0]], np.float32)
    # centre y 0.5 + 1/10 * 0.2 = 0.52, x 0.5 - 2/10 * 0.4 = 0.42; height doubled to 0.4, width 0.4
    assert decode_boxes(encoding, anchor, (10, 10, 5, 5))[0] == pytest.approx([0.32, 0.22, 0.72, 0.62], abs=1e-6)


def test_fast_nms_keeps_the_best_of_overlapping_boxes_best_first():
    boxes = np.array([[0, 0, 10, 10], [0, 1, 10, 11], [20, 20, 30, 30], [0, 0, 0, 5], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.95, 0.005], np.float32)
    # the second overlaps the first by IoU 9/11 and goes; the flat box overlaps nothing and stays; the last is
    # under the score floor
    assert fast_nms(boxes, scores, 0.5, 0.01, 10).tolist() == [3, 0, 2]
    assert fast_nms(boxes, scores, 0.5, 0.01, 2).tolist() == [3, 0]
    assert fast_nms(boxes, scores, 0.85, 0.01, 10).tolist() == [3, 0, 1, 2]  # IoU 0.82 is not above 0.85


def test_each_anchor_keeps_its_best_class_and_outputs_are_padded():
    """One class per anchor (fast NMS), the background column dropped, TFLite's four outputs padded to
    max_detections."""
    anchors = np.array([[0.25, 0.25, 0.5, 0.5], [0.75, 0.75, 0.5, 0.5]], np.float32)
    predictions = np.array([[[0.9, 0.1, 0.6], [0.9, 0.7, 0.2]]], np.float32)  # background first
    boxes, classes, scores, count = postprocess(np.zeros((1, 2, 4), np.float32), predictions, anchors,
                                                SSDDecoding(max_detections=5), num_classes=2)
    assert count.tolist() == [2] and boxes.shape == (1, 5, 4)
    assert classes[0, :2].tolist() == [0, 1] and scores[0, :2] == pytest.approx([0.7, 0.6])
    assert boxes[0, 0] == pytest.approx([0.5, 0.5, 1.0, 1.0]) and not boxes[0, 2:].any()


def tiny_onnx(path: Path, size: int = 8) -> Path:
    """An ONNX file shaped like an export: two anchors whose encodings are zero, whose class scores follow the
    input's mean (so the input matters), and the metadata_props an export writes."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    anchors = np.array([[0.25, 0.25, 0.5, 0.5], [0.75, 0.75, 0.5, 0.5]], np.float32)
    nodes = [
        helper.make_node("ReduceMean", ["input"], ["mean"], axes=[1, 2, 3], keepdims=0),  # [1]
        helper.make_node("Mul", ["mean", "weights"], ["class_predictions"]),  # [1] * [1, 2, 2] -> [1, 2, 2]
        helper.make_node("Mul", ["mean", "zeros"], ["box_encodings"]),
        helper.make_node("Identity", ["anchor_values"], ["anchors"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, size, size, 3])],
        [helper.make_tensor_value_info("box_encodings", TensorProto.FLOAT, [1, 2, 4]),
         helper.make_tensor_value_info("class_predictions", TensorProto.FLOAT, [1, 2, 2]),
         helper.make_tensor_value_info("anchors", TensorProto.FLOAT, [2, 4])],
        [numpy_helper.from_array(np.array([[[0.9, 0.1], [0.2, 0.6]]], np.float32), "weights"),
         numpy_helper.from_array(np.zeros((1, 2, 4), np.float32), "zeros"),
         numpy_helper.from_array(anchors, "anchor_values")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    meta = {"classes": CLASSES,
            "input": {"input_size": size, "letterbox": False, "scale": [1 / 255] * 3, "offset": [0.0] * 3},
            "postprocess": SSDDecoding(max_detections=10).to_json()}
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=json.dumps(value))
    onnx.save(model, str(path))
    return path


def test_a_lone_onnx_file_runs_from_its_own_metadata(tmp_path):
    """No label map, input spec or card beside it: the Predictor reads the classes and normalisation from the
    file's metadata_props, runs it with ONNX Runtime (threads as asked) and decodes its outputs."""
    from maskdetect.infer.predictor import Predictor

    predictor = Predictor(tiny_onnx(tmp_path / "model.onnx"), threshold=0.3, classifier=None, num_threads=1)
    assert (predictor.backend, predictor.runtime, predictor.input_size) == ("onnx", "onnxruntime", 8)
    assert predictor.class_names == CLASSES and predictor.bundle.file_metadata["classes"] == CLASSES
    white = predictor.predict(np.full((16, 32, 3), 255, np.uint8))  # mean 1 after scale: scores as the weights
    assert white.class_id.tolist() == [0, 1] and white.confidence == pytest.approx([0.9, 0.6])
    assert white.xyxy[0] == pytest.approx([0, 0, 16, 8])  # the first anchor's box, in frame pixels (32 x 16)
    assert white.class_names == tuple(CLASSES)
    assert len(predictor.predict(np.zeros((16, 32, 3), np.uint8))) == 0  # black: every score 0


def test_a_file_that_is_no_export_is_refused(tmp_path):
    from maskdetect.infer.onnx_model import OnnxSSD

    path = tiny_onnx(tmp_path / "model.onnx")
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    onnx.save(model, str(path))
    with pytest.raises(ConfigError, match="no classes, input, postprocess in the ONNX metadata_props"):
        OnnxSSD(path, 1)
    (tmp_path / "broken.onnx").write_bytes(b"not onnx")
    with pytest.raises(ConfigError, match="broken.onnx: cannot load the ONNX model"):
        OnnxSSD(tmp_path / "broken.onnx", 1)
    assert set(OUTPUTS) == {"box_encodings", "class_predictions", "anchors"}


def test_a_missing_onnxruntime_names_its_pip_line(tmp_path, monkeypatch):
    from maskdetect.infer.predictor import Predictor

    path = tiny_onnx(tmp_path / "model.onnx")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as in the light install without the extra
    with pytest.raises(ConfigError, match="needs onnxruntime") as caught:
        Predictor(path, classifier=None)
    assert ONNX_INSTALL in str(caught.value) and ONNX_INSTALL == 'pip install "maskdetect[onnx]"'
    assert install_hint("onnxruntime") == ONNX_INSTALL
    assert install_hint("tf2onnx") == install_hint("onnx.helper") == 'pip install "maskdetect[train,onnx-export]"'

"""Export of the shared tiny run: the SavedModel has its model card and serves; SavedModel and TFLite agree."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import SAMPLE, TINY_SIZE

pytestmark = pytest.mark.slow


def test_export_has_model_card_and_loads(tiny_export):
    import tensorflow as tf

    card = json.loads((tiny_export.saved_model.parent / "model_card.json").read_text())
    assert card["classes"] == ["with_mask", "without_mask", "mask_weared_incorrect"]
    assert card["input_size"] == TINY_SIZE and card["versions"]["tensorflow"].startswith("2.21")
    assert card["training_data"]["counts"]["train"]["images"] > 0
    model = tf.saved_model.load(str(tiny_export.saved_model))
    out = model.signatures["serving_default"](input_tensor=tf.zeros([1, 90, 160, 3], tf.uint8))
    assert out["detection_boxes"].shape[-1] == 4 and int(out["num_detections"][0]) <= 100


def test_saved_model_and_tflite_agree(saved, lite):
    """The conversion is faithful: on images already at the model's input size (no resizing on either path, so
    both see the same pixels), the top detections agree in box (IoU >= 0.99), class and score (within 1e-3).
    The two paths resize differently (TensorFlow's bilinear vs OpenCV's), which the 6-step model is too
    untrained to be insensitive to; that is the predictor's business, not the converter's."""
    import cv2

    from maskdetect.detections import box_iou
    from maskdetect.infer.sources import read_image

    size = lite.input_size
    for path in sorted((SAMPLE / "images").glob("*.jpg"))[:3]:
        image = cv2.resize(read_image(path), (size, size), interpolation=cv2.INTER_AREA)
        a, b = saved.predict_raw(image), lite.predict_raw(image)  # no threshold, no cross-class NMS
        top_a, top_b = a[np.argsort(-a.confidence)[:5]], b[np.argsort(-b.confidence)[:5]]
        assert len(top_a) == len(top_b) == 5
        ious = box_iou(top_a.xyxy, top_b.xyxy)
        for i in range(5):
            j = int(np.argmax(ious[i]))
            assert ious[i, j] >= 0.99 and top_a.class_id[i] == top_b.class_id[j], (path.name, i)
            assert abs(float(top_a.confidence[i]) - float(top_b.confidence[j])) <= 1e-3, (path.name, i)

"""Annotators: style in __init__, a new frame from annotate(), never drawing in place."""

from __future__ import annotations

import numpy as np
import pytest

import maskdetect
from maskdetect.infer.annotate import (CLASS_COLORS, BannerAnnotator, BoxAnnotator, FrameAnnotator, LabelAnnotator,
                                 display_class_ids)
from maskdetect.detections import Detections

NAMES = list(maskdetect.CLASSES)


def frame(width: int = 321, height: int = 241) -> np.ndarray:
    return np.full((height, width, 3), 128, np.uint8)


def one_box(class_id: int = 1, **kw) -> Detections:
    return Detections(xyxy=[[40, 60, 200, 200]], confidence=[0.87], class_id=[class_id], **kw)


@pytest.mark.parametrize("annotator, call", [
    (BoxAnnotator(NAMES), lambda a, f: a.annotate(f, one_box())),
    (LabelAnnotator(NAMES), lambda a, f: a.annotate(f, one_box())),
    (BannerAnnotator(), lambda a, f: a.annotate(f, "ALERT")),
    (FrameAnnotator(NAMES), lambda a, f: a.annotate(f, one_box(), banner="ALERT")),
])
def test_annotators_return_a_new_frame_and_leave_the_input_alone(annotator, call):
    original = frame()
    out = call(annotator, original)
    assert out is not original and out.shape == original.shape and out.dtype == np.uint8
    assert (original == 128).all()
    assert (out != 128).any()


@pytest.mark.parametrize("class_id", [0, 1, 2])
def test_boxes_use_the_class_colour(class_id):
    out = BoxAnnotator(NAMES, thickness=3).annotate(frame(), one_box(class_id))
    edge = out[130, 40:43]  # the left edge of the box, halfway down
    assert np.abs(edge.astype(int) - CLASS_COLORS[NAMES[class_id]]).max() <= 2


@pytest.mark.parametrize("tracker_id, data, expected", [
    (None, {}, "without_mask 0.87"),
    ([7], {}, "#7 without_mask 0.87"),
    ([-1], {}, "without_mask 0.87"),                                   # not yet confirmed by the tracker
    ([3], {"smoothed_class_id": np.array([0])}, "#3 with_mask 0.87"),  # the tracker's stable class wins
])
def test_label_text(tracker_id, data, expected):
    detections = one_box(1, tracker_id=tracker_id, data=data)
    assert LabelAnnotator(NAMES).text(detections, 0) == expected


def test_label_without_score():
    assert LabelAnnotator(NAMES, show_score=False).text(one_box(2, tracker_id=[4]), 0) == "#4 mask_weared_incorrect"


def test_display_class_ids_falls_back_where_the_smoothed_class_is_unknown():
    d = Detections(xyxy=np.zeros((2, 4)), confidence=[0.5, 0.5], class_id=[1, 2],
                   data={"smoothed_class_id": np.array([0, -1])})
    assert display_class_ids(d).tolist() == [0, 2]


def test_labels_near_the_border_stay_inside_the_frame():
    d = Detections(xyxy=[[0, 0, 30, 30], [300, 230, 321, 241]], confidence=[0.9, 0.8], class_id=[0, 1],
                   tracker_id=[12345, 2])
    out = FrameAnnotator(NAMES).annotate(frame(), d)
    assert out.shape == (241, 321, 3)


def test_banner_draws_a_strip_on_top_only_when_there_is_text():
    f = frame(640, 360)
    assert (BannerAnnotator().annotate(f, None) == f).all()
    out = BannerAnnotator().annotate(f, "ALERT: mask compliance below 75%")
    assert out[:10].mean() < 128 and (out[-50:] == 128).all()


def test_empty_detections_and_bad_frames():
    f = frame()
    assert (FrameAnnotator(NAMES).annotate(f, Detections.empty()) == f).all()
    with pytest.raises(ValueError, match="RGB uint8"):
        BoxAnnotator(NAMES).annotate(np.zeros((10, 10), np.uint8), Detections.empty())
    with pytest.raises(ValueError, match="RGB uint8"):
        BoxAnnotator(NAMES).annotate(np.zeros((10, 10, 3), np.float32), Detections.empty())

"""`Detections`: validation, NumPy-style selection, constructors from model outputs, post-processing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from maskdetect.detections import Detections, box_iou

NAMES = ["with_mask", "without_mask", "mask_weared_incorrect"]


def dets(boxes, scores, classes, **kw) -> Detections:
    return Detections(xyxy=np.array(boxes, np.float32).reshape(-1, 4), confidence=scores, class_id=classes, **kw)


# -- validation ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, message", [
    (dict(xyxy=[[0, 0, 1, 1]], confidence=[0.5, 0.6], class_id=[0]), "confidence has 2"),
    (dict(xyxy=[[0, 0, 1, 1]], confidence=[0.5], class_id=[0, 1]), "class_id has 2"),
    (dict(xyxy=[[0, 0, 1, 1]], confidence=[0.5], class_id=[0], tracker_id=[1, 2]), "tracker_id has 2"),
    (dict(xyxy=[[0, 0, 1, 1]], confidence=[0.5], class_id=[0], data={"x": [1, 2]}), "data\\['x'\\] has 2"),
    (dict(xyxy=[[0, 0, np.nan, 1]], confidence=[0.5], class_id=[0]), "NaN"),
])
def test_validation_rejects_inconsistent_arrays(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Detections(**kwargs)


def test_empty_has_the_right_shapes_and_dtypes():
    d = Detections.empty()
    assert len(d) == 0 and d.xyxy.shape == (0, 4)
    assert d.xyxy.dtype == np.float32 and d.confidence.dtype == np.float32 and d.class_id.dtype == np.int64
    assert d.to_records(NAMES) == []


# -- selection ----------------------------------------------------------------------------------------------
SAMPLE = dets([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]], [0.9, 0.4, 0.7], [0, 1, 2],
              tracker_id=[5, 6, 7], data={"smoothed_class_id": np.array([0, 1, 1])})


@pytest.mark.parametrize("index, expected_scores", [
    (SAMPLE.confidence > 0.5, [0.9, 0.7]),
    (np.array([2, 0]), [0.7, 0.9]),
    (slice(1, None), [0.4, 0.7]),
    (1, [0.4]),
    (np.int64(2), [0.7]),
    (np.zeros(3, bool), []),
])
def test_numpy_style_selection_returns_a_new_consistent_object(index, expected_scores):
    picked = SAMPLE[index]
    assert picked is not SAMPLE
    np.testing.assert_allclose(picked.confidence, expected_scores)
    assert len(picked.xyxy) == len(picked.class_id) == len(picked.tracker_id) == len(expected_scores)
    assert len(picked.data["smoothed_class_id"]) == len(expected_scores)
    assert len(SAMPLE) == 3  # the original is untouched


def test_iteration_yields_single_detections():
    assert [float(d.confidence[0]) for d in SAMPLE] == pytest.approx([0.9, 0.4, 0.7])


def test_merge_keeps_tracks_and_common_data():
    merged = Detections.merge([SAMPLE[:1], Detections.empty(), SAMPLE[1:]])
    assert merged == SAMPLE
    assert Detections.merge([]) == Detections.empty()


# -- constructors: the one place where the OD API's conventions are undone -----------------------------------
def test_from_saved_model_converts_yxyx_normalised_1_based_to_xyxy_pixels_0_based():
    outputs = {
        "detection_boxes": np.array([[[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 1.0, 1.0], [0.3, 0.3, 0.4, 0.4]]]),
        "detection_classes": np.array([[1.0, 3.0, 2.0]]),
        "detection_scores": np.array([[0.9, 0.8, 0.1]]),
        "num_detections": np.array([2.0]),
    }
    d = Detections.from_saved_model(outputs, resolution_wh=(200, 100))
    assert len(d) == 2  # num_detections cuts the padding
    np.testing.assert_allclose(d.xyxy, [[40, 10, 120, 50], [0, 0, 200, 100]], atol=1e-4)
    assert d.class_id.tolist() == [0, 2]
    np.testing.assert_allclose(d.confidence, [0.9, 0.8])


def test_from_tflite_keeps_0_based_classes_and_clips_boxes_to_the_image():
    boxes = np.array([[[-0.05, -0.05, 0.5, 0.5], [0.5, 0.5, 1.2, 1.1]]], np.float32)
    d = Detections.from_tflite(boxes, np.array([[0.0, 2.0]]), np.array([[0.7, 0.6]]), np.array([2.0]),
                               resolution_wh=(640, 480))
    assert d.class_id.tolist() == [0, 2]
    np.testing.assert_allclose(d.xyxy, [[0, 0, 320, 240], [320, 240, 640, 480]], atol=1e-3)


# -- post-processing ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("threshold, kept", [
    (0.5, [0.9, 0.7]),
    (0.0, [0.9, 0.4, 0.7]),
    (0.9, [0.9]),                       # inclusive
    ({1: 0.3}, [0.9, 0.4, 0.7]),        # classes not named are kept
    ({0: 0.95, 2: 0.8, 1: 0.1}, [0.4]),
])
def test_with_threshold(threshold, kept):
    np.testing.assert_allclose(SAMPLE.with_threshold(threshold).confidence, kept)


FACE = [100, 100, 200, 200]
SAME_FACE = [105, 102, 204, 198]        # IoU ~0.89 with FACE
NEIGHBOUR = [150, 100, 250, 200]        # IoU 1/3 with FACE
ELSEWHERE = [400, 400, 450, 450]


@pytest.mark.parametrize("boxes, scores, classes, iou, kept_scores", [
    ([FACE, SAME_FACE], [0.6, 0.8], [0, 1], 0.5, [0.8]),                 # two classes, one face: best wins
    ([FACE, SAME_FACE], [0.8, 0.6], [1, 2], 0.5, [0.8]),
    ([FACE, SAME_FACE], [0.6, 0.8], [0, 0], 0.5, [0.8]),                 # same class also suppressed
    ([FACE, NEIGHBOUR], [0.6, 0.8], [0, 1], 0.5, [0.6, 0.8]),            # different faces both stay
    ([FACE, NEIGHBOUR], [0.6, 0.8], [0, 1], 0.3, [0.8]),                 # ... unless the IoU limit is lower
    ([FACE, SAME_FACE, ELSEWHERE], [0.5, 0.9, 0.7], [2, 0, 1], 0.5, [0.9, 0.7]),  # original order kept
    ([FACE], [0.5], [0], 0.5, [0.5]),
    ([], [], [], 0.5, []),
])
def test_cross_class_nms(boxes, scores, classes, iou, kept_scores):
    kept = dets(boxes, scores, classes).with_cross_class_nms(iou)
    np.testing.assert_allclose(kept.confidence, kept_scores)


def test_cross_class_nms_keeps_tracks_and_data_aligned():
    d = dets([FACE, SAME_FACE, ELSEWHERE], [0.5, 0.9, 0.7], [2, 0, 1], tracker_id=[1, 2, 3],
             data={"name": np.array(["a", "b", "c"])})
    kept = d.with_cross_class_nms()
    assert kept.tracker_id.tolist() == [2, 3] and kept.data["name"].tolist() == ["b", "c"]


@pytest.mark.parametrize("a, b, expected", [
    ([0, 0, 10, 10], [0, 0, 10, 10], 1.0),
    ([0, 0, 10, 10], [5, 0, 15, 10], 1 / 3),
    ([0, 0, 10, 10], [20, 20, 30, 30], 0.0),
    ([0, 0, 0, 0], [0, 0, 0, 0], 0.0),     # degenerate boxes: no division by zero
])
def test_box_iou(a, b, expected):
    assert box_iou(np.array([a]), np.array([b]))[0, 0] == pytest.approx(expected)


def test_to_records_is_json_ready_with_tracks_and_data():
    records = SAMPLE[:2].to_records(NAMES, frame=3)
    assert records == [
        {"frame": 3, "bbox_xyxy": [0.0, 0.0, 10.0, 10.0], "label": "with_mask", "score": 0.9, "track_id": 5,
         "smoothed_class_id": 0},
        {"frame": 3, "bbox_xyxy": [20.0, 20.0, 30.0, 30.0], "label": "without_mask", "score": 0.4, "track_id": 6,
         "smoothed_class_id": 1},
    ]
    json.dumps(records)


# -- class names, JSON, pictures, files, supervision -------------------------------------------------------
CUSTOM = Detections(xyxy=[[2, 2, 20, 20], [30, 5, 60, 40]], confidence=[0.9, 0.6], class_id=[1, 0],
                    tracker_id=[3, 4], class_names=["mask", "no_mask"])


def test_class_names_travel_through_selection_merge_and_records():
    assert CUSTOM.labels == ["no_mask", "mask"]
    assert CUSTOM[CUSTOM.confidence > 0.7].class_names == ("mask", "no_mask")
    assert Detections.merge([CUSTOM, CUSTOM]).labels == ["no_mask", "mask"] * 2
    assert [r["label"] for r in CUSTOM.to_records()] == ["no_mask", "mask"]
    assert SAMPLE.labels == NAMES  # the package's classes by default
    assert CUSTOM != Detections(xyxy=CUSTOM.xyxy, confidence=CUSTOM.confidence, class_id=CUSTOM.class_id,
                                tracker_id=CUSTOM.tracker_id)  # same boxes, other names


def test_to_json_is_the_records():
    assert json.loads(CUSTOM.to_json(image="a.jpg")) == CUSTOM.to_records(image="a.jpg")
    assert json.loads(Detections.empty().to_json()) == []


def test_annotate_draws_on_a_copy_and_takes_paths_and_pil(tmp_path):
    from PIL import Image

    image = np.full((64, 80, 3), 128, np.uint8)
    drawn = CUSTOM.annotate(image)
    assert drawn.shape == image.shape and (drawn != 128).any() and (image == 128).all()
    assert (drawn[:, 70:] == 128).all()  # nothing right of the boxes
    Image.fromarray(image).save(tmp_path / "grey.png")
    np.testing.assert_array_equal(CUSTOM.annotate(tmp_path / "grey.png"), drawn)
    np.testing.assert_array_equal(CUSTOM.annotate(Image.fromarray(image)), drawn)
    with pytest.raises(ValueError, match="RGB uint8"):
        CUSTOM.annotate(image[..., 0])
    coloured = np.zeros((64, 80, 3), np.uint8)  # a BGR frame comes back BGR, drawn in the right colours
    np.testing.assert_array_equal(CUSTOM.annotate(coloured, order="bgr"), CUSTOM.annotate(coloured)[..., ::-1])
    with pytest.raises(ValueError, match="order="):
        CUSTOM.annotate(image, order="grb")


def test_save_writes_json_or_an_annotated_image_atomically(tmp_path):
    import cv2

    image = np.full((64, 80, 3), 128, np.uint8)
    assert json.loads(CUSTOM.save(tmp_path / "d.json").read_text()) == CUSTOM.to_records()
    saved = cv2.imread(str(CUSTOM.save(tmp_path / "d.png", image)))[..., ::-1]
    np.testing.assert_array_equal(saved, CUSTOM.annotate(image))
    with pytest.raises(ValueError, match="needs the image"):
        CUSTOM.save(tmp_path / "e.jpg")
    with pytest.raises(ValueError, match="writes .json or an image"):
        CUSTOM.save(tmp_path / "e.txt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.json", "d.png"]  # no partial left


def test_supervision_round_trip_keeps_everything():
    import supervision as sv

    ours = CUSTOM[[0, 1]]
    ours.data["smoothed_class_id"] = np.array([1, 1])
    theirs = ours.to_supervision()
    assert isinstance(theirs, sv.Detections)
    np.testing.assert_array_equal(theirs.xyxy, ours.xyxy)
    np.testing.assert_array_equal(theirs.tracker_id, [3, 4])
    assert list(theirs.data["class_name"]) == ["no_mask", "mask"]
    assert Detections.from_supervision(theirs) == ours  # names recovered from data["class_name"]
    assert Detections.from_supervision(theirs, class_names=["a", "b"]).labels == ["b", "a"]
    assert len(Detections.from_supervision(Detections.empty().to_supervision())) == 0


def test_from_supervision_fills_what_a_detector_left_out_and_refuses_unnamed_ids():
    import supervision as sv

    bare = Detections.from_supervision(sv.Detections(xyxy=np.array([[0, 0, 5, 5]], np.float32)))
    assert bare.confidence.tolist() == [1.0] and bare.labels == ["with_mask"]
    with pytest.raises(ValueError, match="class id 7 has no name"):
        Detections.from_supervision(sv.Detections(xyxy=np.array([[0, 0, 5, 5]], np.float32),
                                                  class_id=np.array([7])))
    clash = sv.Detections(xyxy=np.zeros((2, 4), np.float32) + [0, 0, 5, 5], class_id=np.array([0, 0]),
                          data={"class_name": np.array(["mask", "face"])})
    with pytest.raises(ValueError, match="named both"):
        Detections.from_supervision(clash)


def test_a_predictor_gives_its_models_class_names():
    from conftest import SAMPLE as SAMPLE_DIR
    from maskdetect import Predictor

    predictor = Predictor()
    found = predictor.predict(SAMPLE_DIR / "images" / "maksssksksss104.jpg")
    assert len(found) and found.class_names == tuple(predictor.class_names)
    assert set(found.labels) <= set(predictor.class_names)

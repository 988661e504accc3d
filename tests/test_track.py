"""Tracking (ByteTrack via `trackers`) and class smoothing on synthetic sequences."""

from __future__ import annotations

import numpy as np
import pytest

from maskdetect.detections import Detections
from maskdetect.errors import ConfigError
from maskdetect.monitor.track import SMOOTHED_CLASS_KEY, ClassSmoother, Tracker, TrackerSettings, to_supervision



def box(x: float, y: float = 50, size: float = 40) -> list[float]:
    return [x, y, x + size, y + size]


def frame(boxes: list[list[float]], classes: list[int], scores: list[float] | None = None) -> Detections:
    if not boxes:
        return Detections.empty()
    return Detections(xyxy=boxes, confidence=scores or [0.9] * len(boxes), class_id=classes)


# -- conversion ---------------------------------------------------------------------------------------------
def test_to_supervision_keeps_boxes_scores_classes_and_input_positions():
    ours = Detections(xyxy=[box(0), box(100)], confidence=[0.9, 0.4], class_id=[2, 0])
    theirs = to_supervision(ours)
    np.testing.assert_allclose(theirs.xyxy, ours.xyxy)
    np.testing.assert_allclose(theirs.confidence, ours.confidence)
    assert theirs.class_id.tolist() == [2, 0]
    assert theirs.data["index"].tolist() == [0, 1]
    assert len(to_supervision(Detections.empty())) == 0


# -- smoothing ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("window", "method", "observations", "expected"), [
    # window 1: no smoothing
    (1, "majority", [(0, 0.9), (1, 0.9), (0, 0.9)], [0, 1, 0]),
    # a one-frame flip in a window of 5 never shows
    (5, "majority", [(0, 0.9), (0, 0.9), (1, 0.9), (0, 0.9), (0, 0.9)], [0, 0, 0, 0, 0]),
    # a tie keeps the current class; a strict majority changes it
    (4, "majority", [(0, 0.9), (1, 0.9), (1, 0.9), (1, 0.9)], [0, 0, 1, 1]),
    # the window slides: old votes fall out
    (3, "majority", [(2, 0.9), (2, 0.9), (2, 0.9), (0, 0.9), (0, 0.9)], [2, 2, 2, 2, 0]),
    # score-weighted: one confident vote beats two weak ones
    (3, "score", [(0, 0.95), (1, 0.3), (1, 0.3)], [0, 0, 0]),
    (3, "majority", [(0, 0.95), (1, 0.3), (1, 0.3)], [0, 0, 1]),
    # the current class has left the window and the others tie -> the most recent of them
    (2, "majority", [(0, 0.9), (0, 0.9), (1, 0.9), (2, 0.9)], [0, 0, 0, 2]),
])
def test_class_smoother_table(window, method, observations, expected):
    smoother = ClassSmoother(window, method)
    assert [smoother.update(5, c, s) for c, s in observations] == expected


def test_class_smoother_keeps_tracks_apart_and_forgets():
    smoother = ClassSmoother(3)
    assert smoother.update(1, 0) == 0 and smoother.update(2, 1) == 1
    smoother.forget({2})
    assert smoother.current(1) is None and smoother.current(2) == 1


@pytest.mark.parametrize(("window", "method"), [(0, "majority"), (3, "mode")])
def test_class_smoother_rejects_bad_settings(window, method):
    with pytest.raises(ConfigError):
        ClassSmoother(window, method)


# -- tracking -----------------------------------------------------------------------------------------------
def run(tracker: Tracker, frames: list[Detections]) -> list[Detections]:
    return [tracker.update(d) for d in frames]


def test_new_face_gets_its_id_on_its_second_frame_and_ids_are_one_based():
    out = run(Tracker(fps=25), [frame([box(10)], [0])] * 3)
    assert [o.tracker_id.tolist() for o in out] == [[-1], [1], [1]]
    # an unconfirmed box keeps its raw class as the smoothed one
    assert out[0].data[SMOOTHED_CLASS_KEY].tolist() == [0]


def test_ids_are_stable_while_boxes_move_and_output_keeps_input_order():
    frames = []
    for i in range(30):
        boxes, classes = [box(10 + 3 * i, 20), box(300 - 2 * i, 200)], [0, 1]
        if i % 2:  # shuffle the input order every other frame
            boxes, classes = boxes[::-1], classes[::-1]
        frames.append(frame(boxes, classes))
    out = run(Tracker(fps=25), frames)
    for i, o in enumerate(out[1:], start=1):
        expected = [2, 1] if i % 2 else [1, 2]
        assert o.tracker_id.tolist() == expected, f"frame {i}"
        np.testing.assert_allclose(o.xyxy, frames[i].xyxy)
        assert o.class_id.tolist() == frames[i].class_id.tolist()


def test_crossing_faces_keep_their_ids():
    # A moves right, B moves left; they overlap around frame 20 and swap sides
    frames = [frame([box(10 + 5 * i, 50), box(210 - 5 * i, 60)], [0, 1]) for i in range(40)]
    out = run(Tracker(fps=25), frames)
    assert all(o.tracker_id.tolist() == [1, 2] for o in out[1:])


def test_face_keeps_its_id_when_its_raw_class_flips_every_frame():
    """ByteTrack as wrapped here is class-agnostic: a class flip never starts a new track."""
    frames = [frame([box(10 + 2 * i)], [i % 3]) for i in range(30)]
    out = run(Tracker(fps=25, smoothing_window=5), frames)
    assert {int(o.tracker_id[0]) for o in out[1:]} == {1}
    assert [int(o.class_id[0]) for o in out] == [i % 3 for i in range(30)]  # raw classes untouched


def test_two_faces_with_class_noise_keep_ids_and_smoothed_classes():
    rng = np.random.default_rng(7)
    truth = [0, 1]
    frames = []
    for i in range(60):
        noisy = [c if rng.random() > 0.25 else (c + rng.integers(1, 3)) % 3 for c in truth]  # 25% wrong
        frames.append(frame([box(10 + i, 20), box(200 - i, 150)], noisy))
    out = run(Tracker(fps=25, smoothing_window=9), frames)
    assert all(o.tracker_id.tolist() == [1, 2] for o in out[1:])
    smoothed = np.array([o.data[SMOOTHED_CLASS_KEY] for o in out[10:]])
    raw = np.array([o.class_id for o in out[10:]])
    wrong_raw, wrong_smoothed = int((raw != truth).sum()), int((smoothed != truth).sum())
    print(f"wrong labels raw {wrong_raw}, smoothed {wrong_smoothed}")
    assert wrong_raw >= 20 and wrong_smoothed <= wrong_raw // 5
    changes = int((np.diff(smoothed, axis=0) != 0).sum())
    assert changes <= int((np.diff(raw, axis=0) != 0).sum()) // 5


@pytest.mark.parametrize(("missing_frames", "same_id"), [
    (5, True),    # 0.2 s gap at 25 fps < lost_track_s=1.0: the track waits
    (20, True),   # 0.8 s: still within the buffer
    (40, False),  # 1.6 s: the track was dropped; the face comes back as a new person
])
def test_disappearing_face(missing_frames, same_id):
    frames = [frame([box(50 + i)], [0]) for i in range(10)]
    frames += [frame([], [])] * missing_frames
    frames += [frame([box(59 + i)], [0]) for i in range(3)]
    out = run(Tracker(fps=25, settings=TrackerSettings(lost_track_s=1.0)), frames)
    before, after = int(out[9].tracker_id[0]), int(out[-1].tracker_id[0])
    assert before == 1
    assert (after == before) is same_id
    assert all(len(o) == 0 for o in out[10:10 + missing_frames])


def test_timestamps_drive_the_motion_model():
    tracker = Tracker(fps=25)
    out = [tracker.update(frame([box(10 + 20 * i)], [0]), timestamp_s=0.2 * i) for i in range(6)]
    assert [int(o.tracker_id[0]) for o in out] == [-1, 1, 1, 1, 1, 1]


def test_changed_track_ids_names_tracks_whose_smoothed_class_changed():
    tracker = Tracker(fps=25, smoothing_window=1)
    changes = []
    for cls in (0, 0, 0, 1, 1):
        tracker.update(frame([box(10)], [cls]))
        changes.append(sorted(tracker.changed_track_ids))
    assert changes == [[], [], [], [1], []]


def test_tracker_rejects_bad_fps():
    with pytest.raises(ConfigError):
        Tracker(fps=0)

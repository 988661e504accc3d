"""Counting people per class and the compliance alert rule: frame-exact, table-driven expectations."""

from __future__ import annotations

import numpy as np
import pytest

from maskdetect.monitor.compliance import AlertRule, AlertSettings, PeopleCounter, compliance_fraction
from maskdetect.errors import ConfigError


@pytest.mark.parametrize(("classes", "expected"), [
    ([], None), ([0], 1.0), ([1], 0.0), ([2], 0.0), ([0, 1], 0.5), ([0, 0, 2, 1], 0.5), ([0, 0, 0, 1], 0.75),
])
def test_compliance_fraction(classes, expected):
    assert compliance_fraction(classes) == expected


# -- counting -----------------------------------------------------------------------------------------------
def feed(counter: PeopleCounter, frames: list[list[tuple[int, int]]], fps: float = 10.0) -> None:
    """`frames[i]` = list of (track_id, smoothed class) in view at frame i."""
    for i, people in enumerate(frames):
        ids = np.array([t for t, _ in people], np.int64)
        classes = np.array([c for _, c in people], np.int64)
        counter.update(i, i / fps, classes, ids)


def test_unique_people_per_class_by_final_class_ignoring_short_tracks():
    frames = []
    for i in range(30):
        people = [(1, 0 if i < 20 else 1)]          # 20 frames masked, 10 unmasked -> final with_mask
        if 5 <= i < 25:
            people.append((2, 1 if i < 12 else 2))   # 7 frames without, 13 incorrect -> mask_weared_incorrect
        if i in (3, 4):
            people.append((3, 1))                    # 2 frames: flicker, not counted
        if 10 <= i < 15:
            people.append((4, 2 if i % 2 else 1))    # 5 frames: 1,2,1,2,1 -> without_mask (3 vs 2)
        people.append((-1, 1))                       # an unconfirmed box: in view, never a person
        frames.append(people)
    counter = PeopleCounter(3, window_s=1.0, min_track_frames=5)
    feed(counter, frames)
    assert counter.totals() == [1, 1, 1]
    assert [r.track_id for r in counter.counted_tracks()] == [1, 2, 4]
    record = counter.tracks[2]
    assert (record.first_frame, record.last_frame, record.frames) == (5, 24, 20)
    assert counter.tracks[3].frames == 2


def test_final_class_tie_goes_to_the_class_seen_last():
    counter = PeopleCounter(3, min_track_frames=1)
    feed(counter, [[(1, 0)], [(1, 0)], [(1, 2)], [(1, 2)]])
    assert counter.totals() == [0, 0, 1]


def test_windows_count_people_and_mean_compliance_per_window():
    # 10 fps, 1-second windows: window 0 = frames 0-9, window 1 = 10-19, window 2 = 20-24
    frames = []
    for i in range(25):
        people = []
        if i < 15:
            people.append((1, 0))                    # windows 0 and 1
        if 8 <= i < 20:
            people.append((2, 1 if i < 12 else 0))   # w0: 2 frames cls1; w1: 2 frames cls1, 8 cls0 -> 0
        frames.append(people)                        # frames 20-24: nobody
    counter = PeopleCounter(3, window_s=1.0, min_track_frames=3)
    feed(counter, frames)
    windows = counter.windows()
    assert [(w["start_s"], w["end_s"]) for w in windows] == [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)]
    assert [w["people"] for w in windows] == [[1, 1, 0], [2, 0, 0], [0, 0, 0]]
    assert [w["frames_with_people"] for w in windows] == [10, 10, 0]
    # w0: 8 frames at 1.0, 2 frames at 0.5 -> 0.9; w1: frames 10,11 at 0.5, 12-14 at 1.0, 15-19 at 1.0 -> 0.9
    assert windows[0]["mean_compliance"] == pytest.approx(0.9)
    assert windows[1]["mean_compliance"] == pytest.approx(0.9)
    assert windows[2]["mean_compliance"] is None
    assert counter.per_second() == [{"second": 0, "compliance": 0.9}, {"second": 1, "compliance": 0.9},
                                    {"second": 2, "compliance": None}]


def test_frame_stats_without_tracking():
    counter = PeopleCounter(3)
    stat = counter.update(0, 0.0, np.array([0, 1, 1, 2]))
    assert stat.people_per_class == (1, 2, 1) and stat.fraction == 0.25
    assert counter.tracks == {} and counter.totals() == [0, 0, 0]


@pytest.mark.parametrize("kwargs", [{"window_s": 0}, {"min_track_frames": 0}])
def test_counter_rejects_bad_settings(kwargs):
    with pytest.raises(ConfigError):
        PeopleCounter(3, **kwargs)


# -- alert rule ---------------------------------------------------------------------------------------------
def series(*segments: tuple[int, float | None]) -> list[float | None]:
    """(number of frames, compliance) segments -> per-frame compliance."""
    return [value for count, value in segments for _ in range(count)]


def events(values: list[float | None], fps: float = 10.0, **settings) -> list[tuple[str, int]]:
    rule = AlertRule(AlertSettings(**settings))
    found = []
    for i, value in enumerate(values):
        event = rule.update(i, i / fps, value, 0 if value is None else 4)
        if event is not None:
            found.append((event.event, i))
    return found


RAISE, CLEAR = "alert_raised", "alert_cleared"

ALERT_CASES = {
    # name: (values at 10 fps, settings, expected [(event, frame)])
    "raise after exactly S seconds": (
        series((30, 0.5)), dict(seconds=1.0), [(RAISE, 10)]),
    "at the threshold is not below": (
        series((30, 0.75)), dict(seconds=1.0), []),
    "one good frame restarts the run": (
        series((5, 0.5), (1, 1.0), (30, 0.5)), dict(seconds=1.0), [(RAISE, 16)]),
    "seconds=0 raises on the first bad frame": (
        series((3, 1.0), (2, 0.0)), dict(seconds=0.0), [(RAISE, 3)]),
    "clears after S seconds at threshold + margin": (
        series((15, 0.5), (20, 1.0)), dict(seconds=1.0, margin=0.1), [(RAISE, 10), (CLEAR, 25)]),
    "hysteresis: between T and T + margin never clears": (
        series((15, 0.5), (40, 0.8)), dict(seconds=1.0, margin=0.1), [(RAISE, 10)]),
    "hysteresis: a dip into the band restarts the clear run": (
        series((15, 0.5), (5, 1.0), (1, 0.8), (15, 1.0)), dict(seconds=1.0, margin=0.1),
        [(RAISE, 10), (CLEAR, 31)]),
    "clear_seconds differs from seconds": (
        series((15, 0.5), (20, 1.0)), dict(seconds=1.0, clear_seconds=0.5), [(RAISE, 10), (CLEAR, 20)]),
    "no cooldown: raise again after a new full run": (
        series((15, 0.5), (11, 1.0), (20, 0.5)), dict(seconds=1.0, cooldown_s=0.0),
        [(RAISE, 10), (CLEAR, 25), (RAISE, 36)]),
    "cooldown postpones the second raise to raise + cooldown": (
        # raise at frame 10 (1.0 s); cleared at 25; bad again from 26; run long enough at 36 (3.6 s),
        # but cooldown 4 s from 1.0 s ends at 5.0 s -> frame 50
        series((15, 0.5), (11, 1.0), (40, 0.5)), dict(seconds=1.0, cooldown_s=4.0),
        [(RAISE, 10), (CLEAR, 25), (RAISE, 50)]),
    "nobody in view: no raise during the gap, raise on the next frame with people": (
        # run starts at 0; frames 5-13 empty; frame 14 comes 1.0 s after the last evidence (frame 4), which is
        # not more than max_gap -> the run goes on; frames 10-13 are past 1.0 s but empty: no raise; 14 raises
        series((5, 0.5), (9, None), (10, 0.5)), dict(seconds=1.0, max_gap_s=1.0), [(RAISE, 14)]),
    "nobody in view for longer than max_gap restarts the run": (
        # last evidence at frame 4 (0.4 s), next at 16 (1.6 s): gap 1.2 s > 1.0 s -> run restarts at 16
        series((5, 0.5), (11, None), (20, 0.5)), dict(seconds=1.0, max_gap_s=1.0), [(RAISE, 26)]),
    "nobody in view never clears an active alert": (
        series((15, 0.5), (50, None)), dict(seconds=1.0), [(RAISE, 10)]),
    "nobody in view does not break a clear run either": (
        series((15, 0.5), (5, 1.0), (3, None), (10, 1.0)), dict(seconds=1.0, max_gap_s=1.0),
        [(RAISE, 10), (CLEAR, 25)]),
}


@pytest.mark.parametrize("case", list(ALERT_CASES))
def test_alert_rule_timing(case):
    values, settings, expected = ALERT_CASES[case]
    assert events(values, **settings) == expected


def test_alert_event_payload():
    rule = AlertRule(AlertSettings(threshold=0.75, seconds=0.5))
    found = [e for i in range(10) if (e := rule.update(100 + i, 20 + i * 0.1, 0.25, 4))]
    assert len(found) == 1 and rule.active
    assert found[0].to_json() == {"event": RAISE, "alert_id": 1, "frame_index": 105, "timestamp_s": 20.5,
                                  "compliance": 0.25, "people_in_view": 4, "run_start_s": 20.0,
                                  "threshold": 0.75}


def test_alert_ids_count_up():
    rule = AlertRule(AlertSettings(seconds=0.0, clear_seconds=0.0, cooldown_s=0.0))
    kinds = [(e.event, e.alert_id) for i, v in enumerate([0.0, 1.0, 0.0, 1.0]) if (e := rule.update(i, i, v, 1))]
    assert kinds == [(RAISE, 1), (CLEAR, 1), (RAISE, 2), (CLEAR, 2)]


@pytest.mark.parametrize("kwargs", [{"threshold": 1.5}, {"seconds": -1}, {"cooldown_s": -1}, {"margin": -0.1},
                                    {"clear_seconds": -1}])
def test_alert_settings_are_checked(kwargs):
    with pytest.raises(ConfigError):
        AlertSettings(**kwargs)

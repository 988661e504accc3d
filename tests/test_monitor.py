"""The Monitor facade end to end on a synthetic clip, and its CLI helpers."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from maskdetect.cli.predict import add_monitor_arguments, monitor_from_args
from maskdetect.detections import Detections
from maskdetect.infer.sources import SourceInfo
from maskdetect.monitor.monitor import Monitor, MonitorSettings, output_paths


CLASSES = ("with_mask", "without_mask", "mask_weared_incorrect")
FPS = 10.0


def clip_frame(i: int) -> Detections:
    """60 frames at 10 fps.

    A: masked the whole time. B: masked for frames 0-9, unmasked 10-44, masked 45-59.
    C: a 2-frame flicker (frames 30-31), incorrectly masked, confidence 0.5 (inside the review band).
    """
    boxes = [[10 + i, 20, 50 + i, 60], [200 - i, 100, 240 - i, 140]]
    classes = [0, 0 if i < 10 or i >= 45 else 1]
    scores = [0.9, 0.8]
    if i in (30, 31):
        boxes.append([300, 10, 330, 40])
        classes.append(2)
        scores.append(0.5)
    return Detections(xyxy=boxes, confidence=scores, class_id=classes)


def run_clip(monitor: Monitor, frames: int = 60) -> tuple[list[Detections], list[str | None]]:
    image = np.zeros((160, 360, 3), np.uint8)
    outputs, banners = [], []
    for i in range(frames):
        outputs.append(monitor.update(clip_frame(i), i, i / FPS, frame=image))
        banners.append(monitor.banner(i))
    return outputs, banners


def start(monitor: Monitor, out: Path, fps: float = FPS) -> Monitor:
    """What the frame loop does before the first frame: introduce the source (here a 10-FPS clip)."""
    monitor.start(SourceInfo(out.stem, "video", f"{out.stem}.mkv", fps=fps), CLASSES, [out])
    return monitor


def started(out: Path, **settings) -> Monitor:
    return start(Monitor(MonitorSettings(**settings)), out)


@pytest.fixture
def monitor(tmp_path) -> Monitor:
    return started(tmp_path / "clip.mp4", track=True, smoothing_window=1, count_window_s=3.0, min_track_frames=5,
                   alert_threshold=0.75, alert_seconds=1.0, alert_margin=0.1, alert_cooldown_s=0,
                   review_dir=tmp_path / "review")


def test_ids_smoothed_classes_and_banner_timing(monitor, tmp_path):
    outputs, banners = run_clip(monitor)
    assert outputs[0].tracker_id.tolist() == [-1, -1]
    assert all(o.tracker_id[:2].tolist() == [1, 2] for o in outputs[1:])
    assert outputs[30].tracker_id.tolist() == [1, 2, -1] and outputs[31].tracker_id.tolist() == [1, 2, 3]
    assert [o.data["smoothed_class_id"].tolist()[:2] for o in outputs[9:11]] == [[0, 0], [0, 1]]
    # compliance 0.5 from frame 10 (1.0 s) -> raise at 2.0 s = frame 20; back to 1.0 at frame 45 (4.5 s)
    # -> clear at 5.5 s = frame 55
    assert [i for i, b in enumerate(banners) if b] == list(range(20, 55))
    assert banners[20] == "ALERT: mask compliance below 75% since 1.0 s (now 50%)"
    monitor.close()


def test_summary_events_plot_and_review(monitor, tmp_path):
    run_clip(monitor)
    out = tmp_path / "clip.mp4"
    summary = monitor.close()
    paths = output_paths(out)

    assert json.loads(paths["summary"].read_text()) == summary
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert summary["frames"] == 60 and summary["duration_s"] == 6.0
    # B: 24 tracked frames masked (1-9, 45-59), 35 unmasked -> without_mask; C (2 frames) is flicker
    assert summary["people"] == {"with_mask": 1, "without_mask": 1, "mask_weared_incorrect": 0, "total": 2}
    assert [(t["track_id"], t["class"], t["frames"]) for t in summary["tracks"]] == [
        (1, "with_mask", 59), (2, "without_mask", 59)]
    # window [3, 6): B has 15 unmasked and 15 masked frames -> the tie goes to the class it showed last
    assert [w["people"] for w in summary["windows"]] == [
        {"with_mask": 1, "without_mask": 1, "mask_weared_incorrect": 0},
        {"with_mask": 2, "without_mask": 0, "mask_weared_incorrect": 0}]
    assert summary["alerts"]["raised"] == 1
    assert summary["alerts"]["periods"] == [{"alert_id": 1, "start_frame": 20, "start_s": 2.0, "end_frame": 55,
                                             "end_s": 5.5, "cleared": True}]

    lines = [json.loads(line) for line in (tmp_path / "clip.events.jsonl").read_text().splitlines()]
    assert [(e["event"], e["frame_index"], e["source"]) for e in lines] == [
        ("alert_raised", 20, "clip"), ("alert_cleared", 55, "clip")]

    # flips when B's smoothed class changes (frames 10 and 45, 35 apart >= 30); C's low score at frame 30
    assert summary["review"]["saved"] == 3
    assert sorted(p.name for p in (tmp_path / "review" / "images").iterdir()) == [
        "clip_f000010.jpg", "clip_f000030.jpg", "clip_f000045.jpg"]
    assert summary["review"]["by_reason"] == {"class_flip": 2, "low_confidence": 1}


def test_smoothing_hides_a_one_frame_flip_from_alerts(tmp_path):
    monitor = started(tmp_path / "x.mp4", track=True, smoothing_window=5, alert_seconds=0.0, alert_cooldown_s=0)
    raw = [0] * 5 + [1] + [0] * 5  # one wrong frame
    out = [monitor.update(Detections(xyxy=[[10, 10, 50, 50]], confidence=[0.9], class_id=[c]), i, i / FPS)
           for i, c in enumerate(raw)]
    assert [int(o.data["smoothed_class_id"][0]) for o in out] == [0] * 11
    assert monitor.close()["alerts"]["raised"] == 0


def test_an_alert_still_open_at_the_end_is_closed_at_the_last_frame(tmp_path):
    monitor = started(tmp_path / "x.mp4", track=True, alert_seconds=0.5, alert_cooldown_s=0)
    for i in range(10):
        monitor.update(Detections(xyxy=[[10, 10, 50, 50]], confidence=[0.9], class_id=[1]), i, i / FPS)
    periods = monitor.close()["alerts"]["periods"]
    assert periods == [{"alert_id": 1, "start_frame": 5, "start_s": 0.5, "end_frame": 9, "end_s": 0.9,
                        "cleared": False}]


def test_without_tracking_uses_raw_classes(tmp_path):
    monitor = started(tmp_path / "x.mp4", track=False, alert_seconds=0.1, alert_cooldown_s=0)
    outs = [monitor.update(clip_frame(i), i) for i in range(25)]  # timestamps from fps
    assert outs[15].tracker_id is None and outs[15].data["smoothed_class_id"].tolist() == [0, 1]
    assert monitor.banner(10) is None and monitor.banner(11) is not None
    summary = monitor.close()
    assert summary["people"] == {"total": None} and summary["tracks"] == []
    assert summary["windows"][0]["people"] is None


def test_empty_video_and_frames_without_people(tmp_path):
    monitor = started(tmp_path / "empty.mp4", track=True)
    assert monitor.close()["frames"] == 0
    monitor = started(tmp_path / "nobody.mp4", track=True)
    for i in range(5):
        assert len(monitor.update(Detections.empty(), i)) == 0
    summary = monitor.close()
    assert summary["compliance"]["mean"] is None and summary["people"]["total"] == 0
    assert (tmp_path / "nobody.compliance.png").exists()


def test_close_is_idempotent_and_update_after_close_fails(tmp_path):
    monitor = started(tmp_path / "x.mp4", track=True)
    monitor.update(clip_frame(0), 0)
    first = monitor.close()
    assert monitor.close() is first
    assert not (tmp_path / "other.summary.json").exists()
    with pytest.raises(RuntimeError):
        monitor.update(clip_frame(1), 1)


def test_failing_hook_never_stops_the_video(tmp_path):
    parser = add_monitor_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--track", "--alert-seconds", "0.5", "--alert-cooldown", "0", "--alert-command",
                              f"{sys.executable} -c 'import sys; sys.exit(2)'"])
    monitor = start(monitor_from_args(args), tmp_path / "clip.mp4", FPS)
    outputs, banners = run_clip(monitor)
    assert len(outputs) == 60 and any(banners)
    summary = monitor.close()
    assert summary["alerts"]["hooks"] == {"delivered": 0, "failed": 2, "dropped": 0, "per_hook": [
        {"hook": f"command {sys.executable!r}", "delivered": 0, "failed": 2, "dropped": 0}]}


def test_command_hook_receives_each_event(tmp_path):
    log = tmp_path / "hook.log"
    command = f"{sys.executable} -c 'import sys; open(sys.argv[1], \"a\").write(sys.stdin.read() + chr(10))' {log}"
    args = add_monitor_arguments(argparse.ArgumentParser()).parse_args(
        ["--track", "--alert-seconds", "1", "--alert-cooldown", "0", "--alert-command", command])
    monitor = start(monitor_from_args(args), tmp_path / "clip.mp4", FPS)
    run_clip(monitor)
    monitor.close()
    sent = [json.loads(line) for line in log.read_text().splitlines()]
    # the default 15-frame smoothing window: B (9 masked votes, then unmasked from frame 10) turns unmasked
    # when 8 unmasked votes beat the 7 masked ones left, at frame 17 -> raise 1 s later at frame 27; back
    # to masked at 45, it turns at 52 -> a clear would need 6.2 s, past the clip's end
    assert [(e["event"], e["frame_index"]) for e in sent] == [("alert_raised", 27)]


# -- CLI helpers --------------------------------------------------------------------------------------------
def parse(*argv: str) -> argparse.Namespace:
    return add_monitor_arguments(argparse.ArgumentParser()).parse_args(list(argv))


def test_no_monitoring_option_means_no_monitor(tmp_path):
    assert monitor_from_args(parse()) is None
    assert monitor_from_args(argparse.Namespace()) is None


@pytest.mark.parametrize("argv", [["--track"], ["--alert-threshold", "0.5"], ["--review-dir", "{tmp}/R"],
                                  ["--events", "{tmp}/e.jsonl"], ["--alert-url", "http://127.0.0.1:9/x"]])
def test_any_monitoring_option_makes_a_monitor(tmp_path, argv):
    argv = [a.format(tmp=tmp_path) for a in argv]
    monitor = start(monitor_from_args(parse(*argv)), tmp_path / "x.mp4", FPS)
    assert monitor is not None
    assert (monitor.tracker is not None) is ("--track" in argv)
    monitor.close()


def test_options_reach_the_monitor(tmp_path):
    args = parse("--track", "--smoothing-window", "7", "--smoothing", "score", "--count-window", "5",
                 "--min-track-frames", "3", "--alert-threshold", "0.6", "--alert-seconds", "2",
                 "--alert-margin", "0.05", "--alert-cooldown", "9", "--review-dir", str(tmp_path / "r"),
                 "--review-every", "4", "--review-max", "8")
    monitor = start(monitor_from_args(args), tmp_path / "out" / "clip.mp4", 25.0)
    settings = monitor.rule.settings
    assert (settings.threshold, settings.seconds, settings.margin, settings.cooldown_s) == (0.6, 2.0, 0.05, 9.0)
    assert (monitor.tracker.smoother.window, monitor.tracker.smoother.method) == (7, "score")
    assert (monitor.counter.window_s, monitor.counter.min_track_frames) == (5.0, 3)
    assert (monitor.review.every_n_frames, monitor.review.max_frames) == (4, 8)
    assert monitor.events_path == tmp_path / "out" / "clip.events.jsonl" and not monitor.events_path.exists()
    monitor.close()
    assert monitor.events_path.read_text() == ""  # renamed from its partial at the end


def test_events_option_overrides_the_default_path(tmp_path):
    monitor = start(monitor_from_args(parse("--events", str(tmp_path / "ev.jsonl"))), tmp_path / "x.mp4")
    assert monitor.events_path == tmp_path / "ev.jsonl"
    monitor.close()


def test_output_paths_sit_beside_the_output():
    assert output_paths(Path("a/b/clip.mp4")) == {"summary": Path("a/b/clip.summary.json"),
                                                  "plot": Path("a/b/clip.compliance.png"),
                                                  "events": Path("a/b/clip.events.jsonl")}


@pytest.mark.parametrize("module", ["track", "compliance", "hooks", "review", "monitor"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(f"maskdetect.monitor.{module}"))
    assert result.failed == 0 and result.attempted > 0


def test_help_shows_the_monitors_own_defaults(monkeypatch):
    import dataclasses

    text = add_monitor_arguments(argparse.ArgumentParser()).format_help()
    defaults = MonitorSettings()
    assert f"class ({defaults.smoothing_window})" in text and f"T ({defaults.alert_threshold})" in text
    assert f"review frames ({defaults.review_max_frames})" in text
    changed = dataclasses.replace(defaults, smoothing_window=21)  # a changed default ...
    monkeypatch.setattr("maskdetect.monitor.monitor.MonitorSettings", lambda: changed)
    assert "class (21)" in add_monitor_arguments(argparse.ArgumentParser()).format_help()  # ... shows in --help


def test_an_interrupted_run_keeps_the_previous_events_and_a_finished_one_replaces_them(tmp_path):
    """The events stream to a partial file: abort (Ctrl-C on a file, an error) leaves the last log intact."""
    out = tmp_path / "clip.mp4"
    previous = tmp_path / "clip.events.jsonl"
    previous.write_text('{"event": "alert_raised", "from": "the previous run"}\n')
    monitor = started(out, alert_seconds=0.5, alert_cooldown_s=0)
    run_clip(monitor, frames=30)
    assert monitor.events and previous.read_text().count("previous run") == 1
    monitor.abort()
    assert previous.read_text().count("previous run") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.events.jsonl"]  # no partial, no summary
    monitor = started(out, alert_seconds=0.5, alert_cooldown_s=0)
    run_clip(monitor, frames=30)
    monitor.close()
    assert "previous run" not in previous.read_text() and previous.read_text().count("alert_raised") == 1


def test_monitoring_needs_a_frame_rate_and_one_start(tmp_path):
    monitor = Monitor()
    with pytest.raises(RuntimeError, match="before start"):
        monitor.update(clip_frame(0), 0)
    with pytest.raises(Exception, match="needs a frame rate"):
        monitor.start(SourceInfo("a", "image", "a.jpg"), CLASSES, [tmp_path / "a.jpg"])
    start(monitor, tmp_path / "x.mp4")
    with pytest.raises(RuntimeError, match="twice"):
        start(monitor, tmp_path / "x.mp4")
    monitor.abort()

"""Review queue: reasons, rate limits, and Pascal VOC output that parses back with the right boxes."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maskdetect.detections import Detections
from maskdetect.errors import ConfigError
from maskdetect.monitor.review import CLASS_FLIP, LOW_CONFIDENCE, ReviewQueue, voc_xml

CLASSES = ("with_mask", "without_mask", "mask_weared_incorrect")


def tracked(classes, smoothed, scores=None, ids=None, boxes=None) -> Detections:
    n = len(classes)
    return Detections(xyxy=boxes if boxes is not None else [[10 + 40 * i, 10, 40 + 40 * i, 50] for i in range(n)],
                      confidence=scores or [0.9] * n, class_id=classes,
                      tracker_id=ids if ids is not None else list(range(1, n + 1)),
                      data={"smoothed_class_id": np.array(smoothed)})


def parse_voc(path: Path) -> dict:
    root = ET.parse(path).getroot()
    assert root.tag == "annotation"
    size = root.find("size")
    return {
        "filename": root.findtext("filename"),
        "size": tuple(int(size.findtext(t)) for t in ("width", "height", "depth")),
        "objects": [(o.findtext("name"), [int(o.find("bndbox").findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax")])
                    for o in root.findall("object")],
    }


def test_voc_xml_round_trip_rounds_and_clips_boxes(tmp_path):
    xyxy = np.array([[10.4, 20.6, 50.5, 60.2], [-5, 30, 70, 90], [60, 10, 60.2, 20]])  # last: degenerate
    path = tmp_path / "a.xml"
    path.write_text(voc_xml("a.jpg", (64, 80), xyxy, ["with_mask", "without_mask", "with_mask"]))
    assert parse_voc(path) == {"filename": "a.jpg", "size": (64, 80, 3),
                               "objects": [("with_mask", [10, 21, 50, 60]), ("without_mask", [0, 30, 64, 80])]}


@pytest.mark.parametrize(("dets", "changed", "expected"), [
    (tracked([0, 1], [0, 1]), (), []),
    (tracked([0, 1], [0, 0]), (), [CLASS_FLIP]),                       # raw disagrees with smoothed
    (tracked([0, 1], [0, 1]), {2}, [CLASS_FLIP]),                      # smoothed class just changed
    (tracked([0, 1], [0, 0], ids=[1, -1]), (), []),                    # unconfirmed boxes cannot flip
    (tracked([0], [0], scores=[0.3]), (), [LOW_CONFIDENCE]),           # low bound inclusive
    (tracked([0], [0], scores=[0.6]), (), []),                         # high bound exclusive
    (tracked([0], [0], scores=[0.29]), (), []),
    (tracked([1, 0], [0, 0], scores=[0.9, 0.45]), (), [CLASS_FLIP, LOW_CONFIDENCE]),
    (Detections(xyxy=[[0, 0, 9, 9]], confidence=[0.5], class_id=[2]), (), [LOW_CONFIDENCE]),  # untracked
    (Detections.empty(), (), []),
])
def test_reasons(tmp_path, dets, changed, expected):
    queue = ReviewQueue(tmp_path, CLASSES, low=0.3, high=0.6)
    assert queue.reasons(dets, changed) == expected


def test_saved_frame_parses_back_with_smoothed_classes_and_boxes(tmp_path):
    frame = np.zeros((60, 120, 3), np.uint8)
    frame[:, :, 0] = 200  # red: checks RGB order survives
    dets = tracked([1, 2], [0, 2], scores=[0.9, 0.95], boxes=[[5, 6, 30, 40], [60.7, 10, 100.2, 55.5]])
    queue = ReviewQueue(tmp_path / "review", CLASSES, prefix="my clip.mp4")
    assert queue.consider(7, frame, dets) == [CLASS_FLIP]
    image = tmp_path / "review" / "images" / "my_clip.mp4_f000007.jpg"
    xml = tmp_path / "review" / "annotations" / "my_clip.mp4_f000007.xml"
    with Image.open(image) as img:
        assert img.format == "JPEG" and img.size == (120, 60)
        r, g, b = img.getpixel((60, 30))
        assert r > 150 and g < 50 and b < 50
    assert parse_voc(xml) == {"filename": image.name, "size": (120, 60, 3),
                              "objects": [("with_mask", [5, 6, 30, 40]),
                                          ("mask_weared_incorrect", [61, 10, 100, 56])]}
    index = [json.loads(line) for line in (tmp_path / "review" / "index.jsonl").read_text().splitlines()]
    assert index[0]["frame_index"] == 7 and index[0]["reasons"] == [CLASS_FLIP]
    assert [b["label"] for b in index[0]["boxes"]] == ["without_mask", "mask_weared_incorrect"]  # raw labels
    assert not list((tmp_path / "review").rglob("*.partial*"))


FLIP = tracked([1], [0])
LOW = tracked([0], [0], scores=[0.4])
BOTH = tracked([1], [0], scores=[0.4])
NONE = tracked([0], [0])


@pytest.mark.parametrize(("timeline", "every", "max_frames", "saved"), [
    # flips on every frame, one per 10 frames
    ({i: FLIP for i in range(25)}, 10, 100, [0, 10, 20]),
    # each reason has its own clock: low at 3 is saved even though a flip was saved at 0
    ({0: FLIP, 3: LOW, 5: FLIP, 9: LOW, 10: FLIP, 13: LOW}, 10, 100, [0, 3, 10, 13]),
    # a frame with both reasons restarts both clocks
    ({0: BOTH, 5: LOW, 6: FLIP, 10: LOW, 11: FLIP}, 10, 100, [0, 10, 11]),
    # nothing to review -> nothing saved
    ({i: NONE for i in range(20)}, 1, 100, []),
    # max count
    ({i: FLIP for i in range(50)}, 5, 3, [0, 5, 10]),
])
def test_rate_limits(tmp_path, timeline, every, max_frames, saved):
    queue = ReviewQueue(tmp_path, CLASSES, every_n_frames=every, max_frames=max_frames)
    frame = np.zeros((32, 32, 3), np.uint8)
    for index in sorted(timeline):
        queue.consider(index, frame, timeline[index])
    assert [int(p.stem.split("_f")[-1]) for p in queue.saved] == saved
    assert sorted(p.stem for p in (tmp_path / "annotations").glob("*.xml")) == sorted(p.stem for p in queue.saved)
    assert queue.summary()["saved"] == len(saved)


def test_no_frame_means_nothing_saved(tmp_path):
    queue = ReviewQueue(tmp_path, CLASSES)
    assert queue.consider(0, None, FLIP) == []
    assert queue.consider(1, np.zeros((8, 8, 3), np.uint8), FLIP) == [CLASS_FLIP]  # the clock did not start


@pytest.mark.parametrize("kwargs", [{"low": 0.7, "high": 0.6}, {"every_n_frames": 0}, {"max_frames": -1}])
def test_bad_settings(tmp_path, kwargs):
    with pytest.raises(ConfigError):
        ReviewQueue(tmp_path, CLASSES, **kwargs)


def test_review_dir_reads_back_through_the_voc_reader(tmp_path):
    """What `maskdetect data convert --format voc <review_dir>` reads: the images, classes and boxes we saved."""
    from maskdetect.data import formats

    queue = ReviewQueue(tmp_path, CLASSES, prefix="clip", every_n_frames=1)
    frame = np.full((48, 64, 3), 128, np.uint8)
    queue.consider(0, frame, tracked([1], [0], boxes=[[4, 5, 20, 30]]))
    queue.consider(1, frame, tracked([0, 2], [0, 2], scores=[0.9, 0.4], boxes=[[1, 2, 10, 12], [30, 5, 60, 40]]))
    items = sorted(formats.read_dataset("voc", tmp_path), key=lambda item: item.filename)
    assert [item.filename for item in items] == ["clip_f000000.jpg", "clip_f000001.jpg"]
    assert all(item.declared_wh == (64, 48) and item.image.exists() for item in items)
    assert [[(b.name, tuple(b.xyxy)) for b in item.boxes] for item in items] == [
        [("with_mask", (4, 5, 20, 30))],
        [("with_mask", (1, 2, 10, 12)), ("mask_weared_incorrect", (30, 5, 60, 40))],
    ]


def test_a_second_run_never_replaces_review_items_and_a_corrected_annotation_survives(tmp_path):
    frame = np.zeros((40, 60, 3), np.uint8)
    first = ReviewQueue(tmp_path, CLASSES, prefix="clip")
    first.consider(7, frame, FLIP)
    xml = tmp_path / "annotations" / "clip_f000007.xml"
    corrected = xml.read_text().replace("<name>with_mask</name>", "<name>without_mask</name>")
    xml.write_text(corrected)  # a person fixed the class
    (tmp_path / "images" / "clip_f000030.jpg").write_bytes(b"a file of yours")  # only the image name is taken
    second = ReviewQueue(tmp_path, CLASSES, prefix="clip")
    second.consider(7, frame, FLIP)
    second.consider(30, frame, LOW)
    assert xml.read_text() == corrected and (tmp_path / "images" / "clip_f000030.jpg").read_bytes() == b"a file of yours"
    assert sorted(p.name for p in (tmp_path / "annotations").iterdir()) == [
        "clip_f000007-2.xml", "clip_f000007.xml", "clip_f000030-2.xml"]  # new names, image and annotation together
    assert parse_voc(tmp_path / "annotations" / "clip_f000030-2.xml")["filename"] == "clip_f000030-2.jpg"
    index = [json.loads(line) for line in (tmp_path / "index.jsonl").read_text().splitlines()]
    assert [r["image"] for r in index] == ["images/clip_f000007.jpg", "images/clip_f000007-2.jpg",
                                           "images/clip_f000030-2.jpg"]
    assert not list(tmp_path.rglob("*.partial*"))

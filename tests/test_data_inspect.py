"""maskdetect.data.inspect on our TFRecords and on records written the way Roboflow / generate_tfrecord do."""

from __future__ import annotations

import io
import json

import pytest

from data_fixtures import SAMPLE, voc_boxes
from maskdetect.cli import main as cli_main
from maskdetect.data import convert, inspect
from maskdetect.errors import DataError

STEMS = ["maksssksksss231", "maksssksksss64", "maksssksksss13", "maksssksksss737"]


def _foreign_example(stem: str, *, png: bool = False, with_format: bool = True, text: bool = True,
                     labels: bool = True, extra_box: tuple | None = None) -> bytes:
    """A tf.Example as third-party scripts write them (optional keys left out on request)."""
    import tensorflow as tf
    from PIL import Image

    filename, w, h, boxes = voc_boxes(SAMPLE / "annotations" / f"{stem}.xml")
    data = (SAMPLE / "images" / filename).read_bytes()
    if png:
        buf = io.BytesIO()
        Image.open(io.BytesIO(data)).save(buf, format="PNG")
        data = buf.getvalue()
    classes = ["with_mask", "without_mask", "mask_weared_incorrect"]
    boxes = [(n, min(a, w), b, min(c, w), d) for n, a, b, c, d in boxes] + ([extra_box] if extra_box else [])
    f = {
        "image/height": tf.train.Feature(int64_list=tf.train.Int64List(value=[h])),
        "image/width": tf.train.Feature(int64_list=tf.train.Int64List(value=[w])),
        "image/filename": tf.train.Feature(bytes_list=tf.train.BytesList(value=[filename.encode()])),
        "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[data])),
        "image/object/bbox/xmin": tf.train.Feature(float_list=tf.train.FloatList(value=[b[1] / w for b in boxes])),
        "image/object/bbox/xmax": tf.train.Feature(float_list=tf.train.FloatList(value=[b[3] / w for b in boxes])),
        "image/object/bbox/ymin": tf.train.Feature(float_list=tf.train.FloatList(value=[b[2] / h for b in boxes])),
        "image/object/bbox/ymax": tf.train.Feature(float_list=tf.train.FloatList(value=[b[4] / h for b in boxes])),
    }
    if with_format:
        f["image/format"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"png" if png else b"jpg"]))
    if text:
        f["image/object/class/text"] = tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[b[0].encode() for b in boxes]))
    if labels:
        f["image/object/class/label"] = tf.train.Feature(int64_list=tf.train.Int64List(
            value=[classes.index(b[0]) + 1 for b in boxes]))
    return tf.train.Example(features=tf.train.Features(feature=f)).SerializeToString()


def _write(path, records):
    import tensorflow as tf

    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as w:
        for r in records:
            w.write(r)


LABEL_MAP = 'item {\n  name: "with_mask",\n  id: 1\n}\nitem {\n  name: "without_mask",\n  id: 2\n}\n' \
            'item {\n  name: "mask_weared_incorrect",\n  id: 3\n}\n'


@pytest.fixture()
def roboflow_export(tmp_path):
    """Roboflow's TFRecord export layout: train/ valid/ test/ with *.tfrecord and *_label_map.pbtxt."""
    root = tmp_path / "export"
    _write(root / "train" / "masks.tfrecord", [_foreign_example(s) for s in STEMS[:3]])
    _write(root / "valid" / "masks.tfrecord", [_foreign_example(STEMS[3]), _foreign_example(STEMS[0], png=True)])
    for split in ("train", "valid"):
        (root / split / "masks_label_map.pbtxt").write_text(LABEL_MAP)
    return root


def test_inspect_roboflow_export(roboflow_export, tmp_path):
    report = inspect(roboflow_export, out=tmp_path / "rep")
    assert report["records"] == report["valid_records"] == 5 and report["problems"] == []
    assert set(report["splits"]) == {"train", "val"}
    assert report["splits"]["val"]["images"] == 2
    n_boxes = sum(len(voc_boxes(SAMPLE / "annotations" / f"{s}.xml")[3]) for s in STEMS + STEMS[:1])
    assert sum(report["classes"].values()) == n_boxes == report["box_size_px"]["count"]
    assert report["duplicates"] == [[str(roboflow_export / "train" / "masks.tfrecord#2"),
                                     str(roboflow_export / "valid" / "masks.tfrecord#0")]]  # 13 == 737; PNG differs
    for name in ("report.json", "class_histogram.png", "box_sizes.png", "samples.png"):
        assert (tmp_path / "rep" / name).stat().st_size > 0
    assert json.loads((tmp_path / "rep" / "report.json").read_text())["valid_records"] == 5
    assert report["blur"]["count"] == n_boxes and report["blur"]["most_blurred"]


def test_inspect_generate_tfrecord_style(tmp_path):
    """OD API generate_tfrecord scripts: no image/format, class labels only, label map beside the file."""
    path = tmp_path / "records" / "train.record"
    _write(path, [_foreign_example(s, with_format=False, text=False) for s in STEMS[:2]])
    with pytest.raises(AssertionError):  # without a label map the class names are unknown: a problem, not a crash
        assert inspect(path)["problems"] == []
    (tmp_path / "records" / "label_map.pbtxt").write_text(LABEL_MAP)
    report = inspect(path)
    assert report["valid_records"] == 2 and report["problems"] == []
    assert report["notes"] == {"missing image/format": 2, "missing image/object/class/text": 2,
                               "missing image/source_id": 2}
    assert set(report["splits"]) == {"train"}


def test_inspect_finds_problems(tmp_path, capsys):
    path = tmp_path / "val.tfrecord"
    good = _foreign_example(STEMS[0])
    _write(path, [good, b"not a proto at all \xff\xff", _foreign_example(STEMS[1], extra_box=("with_mask", 10, 10,
                                                                                               900, 20))])
    data = path.read_bytes()
    truncated = tmp_path / "test.tfrecord"
    truncated.write_bytes(data[: len(data) - 100])
    report = inspect(tmp_path)
    problems = [p["problem"] for p in report["problems"]]
    assert report["records"] == 5 and report["valid_records"] == 2
    assert any("not a tf.train.Example" in p for p in problems)
    assert any("outside [0, 1]" in p for p in problems)
    assert any("truncated or corrupt TFRecord" in p for p in problems)
    assert cli_main(["data", "inspect", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "PROBLEM" in out and "2 of 5 records valid" in out


def test_inspect_our_output_and_cli(tmp_path, capsys):
    convert("voc", SAMPLE, tmp_path / "data")
    assert cli_main(["data", "inspect", str(tmp_path / "data"), "--out", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    assert "36 of 36 records valid" in out and "duplicates (identical image bytes): 1 groups" in out
    assert (tmp_path / "rep" / "samples.png").exists()


def test_inspect_nothing(tmp_path):
    with pytest.raises(DataError, match="no TFRecord files"):
        inspect(tmp_path)

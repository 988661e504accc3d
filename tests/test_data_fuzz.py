"""Fuzz every reader with malformed annotations and images: the only exception allowed out is DataError."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data_fixtures import SAMPLE, write_voc_xml
from maskdetect.data import convert, inspect
from maskdetect.errors import DataError

SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
JPEG = (SAMPLE / "images" / "maksssksksss231.jpg").read_bytes()
XML = (SAMPLE / "annotations" / "maksssksksss231.xml").read_text()

numbers = st.one_of(st.integers(-10**6, 10**6).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
                    st.text(max_size=6), st.just(""))
names = st.sampled_from(["with_mask", "without_mask", "mask_weared_incorrect", "", "x y", "ü", "<", "DontCare"])


@st.composite
def image_bytes(draw) -> bytes:
    kind = draw(st.sampled_from(["good", "truncated", "flipped", "random", "empty", "png-header"]))
    if kind == "good":
        return JPEG
    if kind == "truncated":
        return JPEG[: draw(st.integers(0, len(JPEG) - 1))]
    if kind == "flipped":
        data = bytearray(JPEG)
        for _ in range(draw(st.integers(1, 20))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data)
    if kind == "png-header":
        return b"\x89PNG\r\n\x1a\n" + draw(st.binary(max_size=200))
    return draw(st.binary(max_size=300)) if kind == "random" else b""


@st.composite
def mutated_text(draw, base: str) -> str:
    text = base
    for _ in range(draw(st.integers(0, 5))):
        op = draw(st.sampled_from(["cut", "insert", "delete"]))
        i = draw(st.integers(0, len(text)))
        if op == "cut":
            text = text[:i]
        elif op == "insert":
            text = text[:i] + draw(st.text(max_size=10)) + text[i:]
        else:
            text = text[:i] + text[i + draw(st.integers(1, 20)):]
    return text


def _run(fmt: str, source: Path, strict: bool, out: Path) -> None:
    try:
        convert(fmt, source, out, strict=strict, workers=2)
    except DataError:
        pass
    else:
        assert (out / "manifest.json").is_file()


@SETTINGS
@given(image=image_bytes(), boxes=st.lists(st.tuples(names, numbers, numbers, numbers, numbers), max_size=4),
       raw=st.one_of(st.none(), mutated_text(XML)), strict=st.booleans())
def test_fuzz_voc(image, boxes, raw, strict):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "voc"
        (root / "annotations").mkdir(parents=True)
        (root / "images").mkdir()
        (root / "images" / "maksssksksss231.jpg").write_bytes(image)
        xml = root / "annotations" / "a.xml"
        if raw is None:
            write_voc_xml(xml, "maksssksksss231.jpg", (400, 249), boxes)
        else:
            xml.write_bytes(raw.encode("utf-8", "replace"))
        _run("voc", root, strict, Path(d) / "out")


@SETTINGS
@given(image=image_bytes(), lines=st.lists(st.lists(st.one_of(names, numbers), max_size=17).map(" ".join),
                                           max_size=4), strict=st.booleans())
def test_fuzz_kitti(image, lines, strict):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "kitti"
        (root / "label_2").mkdir(parents=True)
        (root / "image_2").mkdir()
        (root / "image_2" / "000001.jpg").write_bytes(image)
        (root / "label_2" / "000001.txt").write_bytes("\n".join(lines).encode("utf-8", "replace"))
        _run("kitti", root, strict, Path(d) / "out")


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
                           lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                           max_leaves=10)


@st.composite
def coco_json(draw) -> str:
    if draw(st.booleans()):
        return json.dumps(draw(json_values))
    image = {"id": draw(st.one_of(st.integers(0, 2), json_values)), "file_name": draw(
        st.sampled_from(["a.jpg", "missing.jpg", "", "../a.jpg"])), "width": draw(json_values),
        "height": draw(json_values)}
    anns = draw(st.lists(st.fixed_dictionaries({
        "id": st.integers(), "image_id": st.one_of(st.integers(0, 2), json_values),
        "category_id": st.one_of(st.integers(0, 3), json_values),
        "bbox": st.one_of(st.lists(st.one_of(st.floats(allow_nan=False), st.integers(-5, 500)), max_size=5),
                          json_values),
        "iscrowd": st.one_of(st.integers(0, 1), json_values)}), max_size=4))
    cats = [{"id": 1, "name": "with_mask"}, {"id": 2, "name": "without_mask"}]
    doc = {"images": [image], "annotations": anns, "categories": draw(st.one_of(st.just(cats), json_values))}
    return draw(mutated_text(json.dumps(doc))) if draw(st.booleans()) else json.dumps(doc)


@SETTINGS
@given(image=image_bytes(), doc=coco_json(), strict=st.booleans())
def test_fuzz_coco(image, doc, strict):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "coco"
        (root / "images").mkdir(parents=True)
        (root / "images" / "a.jpg").write_bytes(image)
        (root / "annotations.json").write_bytes(doc.encode("utf-8", "replace"))
        _run("coco", root, strict, Path(d) / "out")


@SETTINGS
@given(image=image_bytes(), lines=st.lists(st.lists(numbers, max_size=6).map(" ".join), max_size=4),
       names_file=st.one_of(st.just(("classes.txt", "with_mask\nwithout_mask\n")),
                            st.tuples(st.just("classes.txt"), st.text(max_size=20)),
                            st.tuples(st.just("data.yaml"), st.text(max_size=40)),
                            st.just(("data.yaml", "names: {0: with_mask, x: y}")),
                            st.just(("data.yaml", "names: [with_mask]\n"))), strict=st.booleans())
def test_fuzz_yolo(image, lines, names_file, strict):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "yolo"
        (root / "images").mkdir(parents=True)
        (root / "labels").mkdir()
        (root / "images" / "a.jpg").write_bytes(image)
        (root / "labels" / "a.txt").write_bytes("\n".join(lines).encode("utf-8", "replace"))
        (root / names_file[0]).write_bytes(names_file[1].encode("utf-8", "replace"))
        _run("yolo", root, strict, Path(d) / "out")


@st.composite
def tfrecord_payloads(draw) -> list[bytes]:
    import tensorflow as tf

    records = []
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.booleans()):
            records.append(draw(st.binary(max_size=100)))
            continue
        n = draw(st.integers(0, 3))
        floats = st.lists(st.floats(width=32), min_size=n, max_size=n + draw(st.integers(0, 1)))
        f = {"image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[draw(image_bytes())]))}
        for k in ("xmin", "xmax", "ymin", "ymax"):
            f[f"image/object/bbox/{k}"] = tf.train.Feature(float_list=tf.train.FloatList(value=draw(floats)))
        if draw(st.booleans()):
            f["image/object/class/text"] = tf.train.Feature(bytes_list=tf.train.BytesList(
                value=[draw(st.binary(max_size=8)) for _ in range(n)]))
        if draw(st.booleans()):
            f["image/object/class/label"] = tf.train.Feature(int64_list=tf.train.Int64List(
                value=[draw(st.integers(-3, 5)) for _ in range(n)]))
        if draw(st.booleans()):
            f["image/width"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[draw(st.integers(-5, 500))]))
        records.append(tf.train.Example(features=tf.train.Features(feature=f)).SerializeToString())
    return records


@SETTINGS
@given(records=tfrecord_payloads(), cut=st.one_of(st.none(), st.integers(0, 2000)), label_map=st.booleans(),
       strict=st.booleans())
def test_fuzz_tfrecord_convert_and_inspect(records, cut, label_map, strict):
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "rec"
        root.mkdir()
        path = root / "train.tfrecord"
        with tf.io.TFRecordWriter(str(path)) as w:
            for r in records:
                w.write(r)
        if cut is not None:
            path.write_bytes(path.read_bytes()[:cut])
        if label_map:
            (root / "label_map.pbtxt").write_text('item { id: 1 name: "with_mask" }')
        _run("tfrecord", root, strict, Path(d) / "out")
        try:
            report = inspect(root)
        except DataError:
            return
        assert report["valid_records"] + len(report["problems"]) >= report["records"]

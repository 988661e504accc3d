"""maskdetect.data.convert on the bundled sample and on datasets the tests build (never ../shared)."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter

import numpy as np
import pytest

from data_fixtures import (SAMPLE, copy_voc, parse, read_records, voc_boxes, voc_to_coco, voc_to_kitti,
                           voc_to_yolo, write_voc_xml)
from maskdetect.cli import main as cli_main
from maskdetect.data import convert
from maskdetect.errors import ConfigError, DataError
from maskdetect.guard import MARKER
from maskdetect.labelmap import read_label_map

# 231: box past the right edge; 64: eight 1-3 px faces; 603: both; 13 == 737 byte for byte.
QUIRKY = ["maksssksksss231", "maksssksksss64", "maksssksksss603", "maksssksksss13", "maksssksksss737"]


@pytest.fixture(scope="module")
def sample_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("conv") / "data"
    return convert("voc", SAMPLE, out), out


def test_sample_every_box_kept_and_readable_by_plain_tf(sample_out):
    manifest, out = sample_out
    expected = Counter()
    for xml in SAMPLE.glob("annotations/*.xml"):
        expected.update(n for n, *_ in voc_boxes(xml)[3])
    records = [parse(r) for r in read_records(out)]
    assert len(records) == 36 == manifest.counts["total"]["images"]
    got = Counter(t.decode() for r in records for t in r["image/object/class/text"])
    assert got == expected and sum(got.values()) == 350
    assert manifest.dropped_boxes == [] and manifest.skipped == []
    names = read_label_map(out / "label_map.pbtxt")
    assert names == ["with_mask", "without_mask", "mask_weared_incorrect"]
    for r in records:
        assert r["image/format"] == b"jpeg"
        assert r["image"].shape == (r["image/height"], r["image/width"], 3)
        assert all(0 <= v <= 1 for k in ("xmin", "xmax", "ymin", "ymax") for v in r[f"image/object/bbox/{k}"])
        assert (r["image/object/bbox/xmin"] < r["image/object/bbox/xmax"]).all()
        assert [names[i - 1] for i in r["image/object/class/label"]] == \
            [t.decode() for t in r["image/object/class/text"]]
    # the originals' bytes are kept for JPEG input
    by_name = {r["image/filename"].decode(): r["image/encoded"] for r in records}
    for name, data in by_name.items():
        assert data == (SAMPLE / "images" / name).read_bytes()


def test_sample_clipping_tiny_boxes_and_manifest(sample_out):
    manifest, out = sample_out
    assert len(manifest.clipped_boxes) == 3  # 231, 603: one px past the right edge
    assert {c["outside_px"] for c in manifest.clipped_boxes} == {1.0}
    data = json.loads((out / "manifest.json").read_text())
    assert data["counts"] == manifest.counts and data["options"]["seed"] == 0
    for f in data["files"]:
        assert hashlib.sha256((out / f["name"]).read_bytes()).hexdigest() == f["sha256"]
    written = ["label_map.pbtxt", "manifest.json"] + [f["name"] for f in data["files"]]
    assert sorted(p.name for p in out.iterdir()) == sorted(written + [MARKER])
    assert json.loads((out / MARKER).read_text()) == {"command": "data convert", "files": sorted(written)}
    assert {f["name"] for f in data["files"]} == {"train-00000-of-00001.tfrecord", "val-00000-of-00001.tfrecord",
                                                   "test-00000-of-00001.tfrecord"}
    tiny = [r for r in map(parse, read_records(out)) if r["image/filename"] == b"maksssksksss64.jpg"][0]
    widths = (tiny["image/object/bbox/xmax"] - tiny["image/object/bbox/xmin"]) * tiny["image/width"]
    assert (widths <= 3.01).sum() >= 6  # 1-3 px faces are kept


def test_split_is_stratified_and_keeps_duplicates_together(sample_out):
    manifest, out = sample_out
    splits = {}
    for split in ("train", "val", "test"):
        for r in read_records(out, f"{split}-*.tfrecord"):
            splits[parse(r)["image/filename"].decode()] = split
    assert splits["maksssksksss13.jpg"] == splits["maksssksksss737.jpg"]
    assert manifest.duplicates and len(manifest.duplicates[0]) == 2
    for split in ("train", "val", "test"):  # every class in every split (20 rare boxes in 36 images)
        assert set(manifest.counts[split]["classes"]) == {"with_mask", "without_mask", "mask_weared_incorrect"}
    assert manifest.counts["train"]["images"] >= 26


def test_conversion_is_deterministic_and_seeded(tmp_path, sample_out):
    manifest, out = sample_out
    again = convert("voc", SAMPLE, tmp_path / "again")
    assert [f["sha256"] for f in again.files] == [f["sha256"] for f in manifest.files]
    other = convert("voc", SAMPLE, tmp_path / "other", seed=1)
    assert [f["sha256"] for f in other.files] != [f["sha256"] for f in manifest.files]


def test_split_all_train_and_class_map(tmp_path):
    m = convert("voc", SAMPLE, tmp_path / "o", split="1,0,0",
                class_map=["mask_weared_incorrect=without_mask"])
    assert [f["name"] for f in m.files] == ["train-00000-of-00001.tfrecord"]
    assert m.classes == ["with_mask", "without_mask"]
    assert read_label_map(tmp_path / "o" / "label_map.pbtxt") == ["with_mask", "without_mask"]
    assert m.counts["train"]["classes"] == {"with_mask": 275, "without_mask": 75}


def test_rename_classes_and_order(tmp_path):
    voc = tmp_path / "voc"
    (voc / "annotations").mkdir(parents=True)
    (voc / "images").mkdir()
    shutil.copy(SAMPLE / "images" / "maksssksksss231.jpg", voc / "images" / "a.jpg")
    write_voc_xml(voc / "annotations" / "a.xml", "a.jpg", (400, 249),
                  [("zebra", 1, 1, 9, 9), ("mask", 10, 10, 20, 20), ("no-mask", 30, 30, 40, 40), ("apple", 2, 2, 5, 5)])
    with pytest.raises(DataError, match="unknown class name.*'apple' \\(1 boxes, e.g. .*a.xml\\), 'zebra'"):
        convert("voc", voc, tmp_path / "o", split=(1, 0, 0))
    m = convert("voc", voc, tmp_path / "o", split=(1, 0, 0), class_map={"mask": "with_mask", "no-mask": "without_mask"},
                allow_new_classes=True)
    assert m.classes == ["with_mask", "without_mask", "apple", "zebra"]
    with pytest.raises(DataError, match="unknown class 'zebra'.*a.xml|a.xml.*unknown class 'zebra'"):
        convert("voc", voc, tmp_path / "o2", split=(1, 0, 0), strict=True, class_map={"mask": "with_mask"},
                classes=["with_mask", "without_mask", "apple", "no-mask"])
    m = convert("voc", voc, tmp_path / "o3", split=(1, 0, 0), classes=["with_mask", "mask", "no-mask"])
    assert m.classes == ["with_mask", "mask", "no-mask"]
    assert sorted(d["reason"].split(" (")[0] for d in m.dropped_boxes) == ["unknown class 'apple'",
                                                                           "unknown class 'zebra'"]


def test_png_rgba_becomes_rgb_jpeg(tmp_path):
    from PIL import Image

    voc = copy_voc(tmp_path / "voc", ["maksssksksss231", "maksssksksss64"])
    for jpg in list((voc / "images").glob("*.jpg")):
        im = Image.open(jpg).convert("RGBA")
        im.putpixel((0, 0), (0, 0, 0, 0))  # one transparent pixel
        im.save(jpg.with_suffix(".png"))
        jpg.unlink()
        xml = voc / "annotations" / f"{jpg.stem}.xml"
        xml.write_text(xml.read_text().replace(".jpg<", ".png<"))
    Image.open(SAMPLE / "images" / "maksssksksss13.jpg").convert("P").save(voc / "images" / "p.png")
    write_voc_xml(voc / "annotations" / "p.xml", "p.png", (0, 0), [("with_mask", 10, 10, 50, 50)])
    m = convert("voc", voc, tmp_path / "o", split=(1, 0, 0))
    records = [parse(r) for r in read_records(tmp_path / "o")]
    assert len(records) == 3 and m.counts["total"]["boxes"] == 1 + sum(len(voc_boxes(x)[3]) for x in
                                                                      (voc / "annotations").glob("m*.xml"))
    for r in records:
        assert r["image/encoded"][:2] == b"\xff\xd8" and r["image"].shape[2] == 3
        assert r["image/filename"].endswith(b".png")
    white = [r for r in records if r["image/filename"] == b"maksssksksss231.png"][0]["image"][0, 0]
    assert (white > 240).all()  # transparent pixels on white


@pytest.mark.parametrize("fmt, build", [("kitti", voc_to_kitti), ("coco", voc_to_coco), ("yolo", voc_to_yolo)])
def test_other_formats_give_identical_records(tmp_path, fmt, build):
    rare = sorted(p.stem for p in SAMPLE.glob("annotations/*.xml") if "mask_weared_incorrect" in p.read_text())[:2]
    voc = copy_voc(tmp_path / "voc", QUIRKY + rare)
    reference = convert("voc", voc, tmp_path / "ref", split=(1, 0, 0))
    other = convert(fmt, build(voc, tmp_path / fmt), tmp_path / f"out-{fmt}", split=(1, 0, 0))
    assert other.counts == reference.counts
    assert read_records(tmp_path / f"out-{fmt}") == read_records(tmp_path / "ref")
    assert [f["sha256"] for f in other.files] == [f["sha256"] for f in reference.files]


def test_tfrecord_input_reshards_to_identical_records(tmp_path, sample_out):
    _, out = sample_out
    m = convert("tfrecord", out, tmp_path / "re", split="keep")
    assert m.counts == json.loads((out / "manifest.json").read_text())["counts"]
    for split in ("train", "val", "test"):
        assert sorted(read_records(tmp_path / "re", f"{split}-*")) == sorted(read_records(out, f"{split}-*"))
    m2 = convert("tfrecord", out, tmp_path / "re2", num_shards=3, split=(1, 0, 0))
    assert [f["name"] for f in m2.files] == [f"train-0000{k}-of-00003.tfrecord" for k in range(3)]
    assert sorted(read_records(tmp_path / "re2")) == sorted(read_records(out))


# --------------------------------------------------------------------------- bad input
def _bad_dataset(tmp_path):
    voc = copy_voc(tmp_path / "voc", ["maksssksksss231", "maksssksksss64", "maksssksksss13"])
    ann, img = voc / "annotations", voc / "images"
    write_voc_xml(ann / "missing.xml", "nowhere.jpg", (10, 10), [("with_mask", 1, 1, 5, 5)])
    (img / "trunc.jpg").write_bytes((img / "maksssksksss64.jpg").read_bytes()[:3000])
    write_voc_xml(ann / "trunc.xml", "trunc.jpg", (400, 225), [("with_mask", 1, 1, 5, 5)])
    shutil.copy(img / "maksssksksss13.jpg", img / "zero.jpg")
    write_voc_xml(ann / "zero.xml", "zero.jpg", (400, 400),
                  [("with_mask", 5, 5, 5, 20), ("with_mask", 500, 10, 520, 30), ("without_mask", 10, 10, 40, 40)])
    shutil.copy(img / "maksssksksss13.jpg", img / "empty.jpg")
    write_voc_xml(ann / "empty.xml", "empty.jpg", (400, 400), [])
    (ann / "broken.xml").write_text("<annotation><filename>x.jpg</filename><object>")
    return voc


def test_bad_inputs_are_skipped_and_listed(tmp_path):
    voc = _bad_dataset(tmp_path)
    m = convert("voc", voc, tmp_path / "o", split=(1, 0, 0))
    reasons = {s["item"].rsplit("/", 1)[-1]: s["reason"] for s in m.skipped}
    assert set(reasons) == {"missing.xml", "trunc.xml", "empty.xml", "broken.xml"}
    assert "not found" in reasons["missing.xml"] and "empty annotation" in reasons["empty.xml"]
    assert "not valid Pascal VOC XML" in reasons["broken.xml"]
    assert "trunc.jpg" in reasons["trunc.xml"] and "truncated" in reasons["trunc.xml"]
    assert [d["reason"].split(" to ")[0] for d in m.dropped_boxes] == ["zero area after clipping"] * 2
    assert m.counts["total"]["images"] == 4
    assert len(read_records(tmp_path / "o")) == 4


@pytest.mark.parametrize("bad, match", [
    ("missing.xml", "nowhere.jpg.*not found"), ("trunc.xml", "trunc.jpg.*(truncated|corrupt)"),
    ("zero.xml", "zero.xml.*zero area"), ("empty.xml", "empty.xml.*empty annotation"),
    ("broken.xml", "broken.xml.*not valid Pascal VOC XML"),
])
def test_strict_raises_naming_the_file_and_writes_nothing(tmp_path, bad, match):
    voc = _bad_dataset(tmp_path)
    for xml in (voc / "annotations").glob("*.xml"):
        if xml.name != bad and not xml.name.startswith("maks"):
            xml.unlink()
    with pytest.raises(DataError, match=match):
        convert("voc", voc, tmp_path / "o", strict=True)
    assert not (tmp_path / "o").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["voc"]  # no temporary folder left either


def test_failed_conversion_keeps_previous_output(tmp_path, sample_out):
    _, out = sample_out
    target = tmp_path / "o"
    shutil.copytree(out, target)
    before = sorted((p.name, p.read_bytes()) for p in target.iterdir())
    voc = _bad_dataset(tmp_path)
    with pytest.raises(DataError):
        convert("voc", voc, target, strict=True)
    assert sorted((p.name, p.read_bytes()) for p in target.iterdir()) == before


def test_refuses_to_replace_foreign_folder(tmp_path):
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "thesis.tex").write_text("precious")
    with pytest.raises(ConfigError, match="refusing to replace"):
        convert("voc", SAMPLE, tmp_path / "home")
    assert (tmp_path / "home" / "thesis.tex").read_text() == "precious"


def test_truncated_tfrecord_input(tmp_path, sample_out):
    _, out = sample_out
    src = tmp_path / "src"
    src.mkdir()
    data = (out / "train-00000-of-00001.tfrecord").read_bytes()
    (src / "train.tfrecord").write_bytes(data[: len(data) // 2])
    m = convert("tfrecord", src, tmp_path / "o", split=(1, 0, 0))
    assert m.skipped and "truncated or corrupt TFRecord" in m.skipped[0]["reason"]
    assert 0 < m.counts["total"]["images"] < 30
    with pytest.raises(DataError, match="train.tfrecord.*truncated"):
        convert("tfrecord", src, tmp_path / "o2", strict=True)


def test_no_usable_image_is_an_error(tmp_path):
    (tmp_path / "src" / "annotations").mkdir(parents=True)
    write_voc_xml(tmp_path / "src" / "annotations" / "a.xml", "a.jpg", (1, 1), [])
    with pytest.raises(DataError, match="no usable image"):
        convert("voc", tmp_path / "src", tmp_path / "o")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no Pascal VOC"):
        convert("voc", tmp_path / "empty", tmp_path / "o")
    with pytest.raises(DataError, match="no such file or folder"):
        convert("voc", tmp_path / "nope", tmp_path / "o")


@pytest.mark.parametrize("kwargs", [{"split": "0.8,0.2"}, {"split": "a,b,c"}, {"split": (0, 0, 0)},
                                    {"class_map": ["nonsense"]}, {"min_blur": -1}])
def test_bad_options(tmp_path, kwargs):
    with pytest.raises(ConfigError):
        convert("voc", SAMPLE, tmp_path / "o", **kwargs)


def test_blur_filter_drops_faces_not_images(tmp_path):
    from PIL import Image, ImageFilter

    voc = copy_voc(tmp_path / "voc", ["maksssksksss231", "maksssksksss13"])
    sharp = convert("voc", voc, tmp_path / "sharp", split=(1, 0, 0), min_blur=100)
    path = voc / "images" / "maksssksksss231.jpg"
    Image.open(path).filter(ImageFilter.GaussianBlur(6)).save(path, quality=95)
    m = convert("voc", voc, tmp_path / "o", split=(1, 0, 0), min_blur=100)
    assert m.counts["total"]["images"] == 1 and m.skipped[0]["reason"] == "every face is below the blur threshold"
    assert len(m.dropped_boxes) >= len(voc_boxes(voc / "annotations" / "maksssksksss231.xml")[3])
    assert all("blurred" in d["reason"] for d in m.dropped_boxes)
    assert sharp.counts["total"]["images"] == 2
    with pytest.raises(DataError):  # blur is a filter, not an error ... but no image left is one
        convert("voc", copy_voc(tmp_path / "v2", ["maksssksksss231"]), tmp_path / "o2", min_blur=1e9, strict=True)


def test_cli_convert(tmp_path, capsys):
    assert cli_main(["data", "convert", "--format", "voc", "--source", str(SAMPLE), "--out", str(tmp_path / "o"),
                     "--split", "1,0,0", "--map", "mask_weared_incorrect=without_mask", "--workers", "1"]) == 0
    text = capsys.readouterr().out
    assert "36 images" in text and "classes (label map order): with_mask, without_mask" in text
    assert cli_main(["data", "convert", "--format", "voc", "--source", str(tmp_path / "nope"),
                     "--out", str(tmp_path / "o2")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_workers_do_not_change_output(tmp_path, sample_out):
    manifest, _ = sample_out
    one = convert("voc", SAMPLE, tmp_path / "one", workers=1)
    assert [f["sha256"] for f in one.files] == [f["sha256"] for f in manifest.files]
    assert np.isfinite(one.images_per_s)

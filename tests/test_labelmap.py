"""Label maps (maskdetect.labelmap): write/read round trip, the errors, and the one finder used by the data
readers (beside TFRecords) and the predictor (beside an export)."""

from __future__ import annotations

import pytest

from maskdetect.errors import DataError
from maskdetect.labelmap import find_label_map, format_label_map, read_label_map, write_label_map

NAMES = ["with_mask", "without_mask", "mask_weared_incorrect"]


def test_round_trip_and_other_writers(tmp_path):
    assert read_label_map(write_label_map(tmp_path / "a.pbtxt", NAMES)) == NAMES
    (tmp_path / "b.pbtxt").write_text("item { name: 'b' id: 2 }\nitem {\n display_name: \"a\"\n id: 1\n}\n")
    assert read_label_map(tmp_path / "b.pbtxt") == ["a", "b"]
    assert format_label_map(["x"]) == 'item {\n  id: 1\n  name: "x"\n}\n'


@pytest.mark.parametrize("text, message", [
    ("", "no `item"), ("item { id: 0 name: 'bg' }", "reserved for the background"),
    ("item { id: 1 name: 'a' } item { id: 3 name: 'c' }", "without gaps"), ("item { name: 'a' }", "lacks an id"),
])
def test_bad_label_maps_say_what_to_fix(tmp_path, text, message):
    (tmp_path / "l.pbtxt").write_text(text)
    with pytest.raises(DataError, match=message):
        read_label_map(tmp_path / "l.pbtxt")
    with pytest.raises(DataError, match="cannot read"):
        read_label_map(tmp_path / "missing.pbtxt")


def test_finder_beside_an_export_or_one_folder_up(tmp_path):
    export = tmp_path / "run" / "export"
    (export / "saved_model").mkdir(parents=True)
    (export / "model.tflite").write_bytes(b"")
    assert find_label_map(export / "saved_model") is None
    write_label_map(tmp_path / "run" / "labelmap.pbtxt", NAMES)
    assert find_label_map(export / "model.tflite") == tmp_path / "run" / "labelmap.pbtxt"  # the parent dir
    write_label_map(export / "label_map.pbtxt", NAMES)
    assert find_label_map(export / "saved_model") == export / "label_map.pbtxt"            # nearer wins
    assert find_label_map(export / "model.tflite") == export / "label_map.pbtxt"           # beside wins


def test_finder_beside_tfrecords_skips_files_that_are_not_label_maps(tmp_path):
    (tmp_path / "train.tfrecord").write_bytes(b"")
    (tmp_path / "a-notes.pbtxt").write_text("not a label map")
    assert find_label_map(tmp_path / "train.tfrecord") is None
    write_label_map(tmp_path / "masks_label_map.pbtxt", NAMES)  # a Roboflow-style name
    assert find_label_map(tmp_path / "train.tfrecord") == tmp_path / "masks_label_map.pbtxt"
    write_label_map(tmp_path / "label_map.pbtxt", ["other"])
    assert find_label_map(tmp_path / "train.tfrecord") == tmp_path / "label_map.pbtxt"   # the usual name first

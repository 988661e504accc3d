"""Class names: the names data sets really use map onto our three classes whatever their case and separators;
an unknown name (a typo) is an error naming it, unless mapped or allowed."""

from __future__ import annotations

import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import SAMPLE
from data_fixtures import write_voc_xml
from maskdetect.cli import main as cli_main
from maskdetect.data import convert
from maskdetect.data.classnames import ALIASES, blind, resolve_names
from maskdetect.errors import DataError
from test_guard import tree_hash

TABLE = [
    ("with_mask", "with_mask"), ("With_Mask", "with_mask"), ("WITH-MASK", "with_mask"), ("with mask", "with_mask"),
    ("mask", "with_mask"), ("Mask", "with_mask"), ("masked", "with_mask"), ("face_mask", "with_mask"),
    ("without_mask", "without_mask"), ("without-mask", "without_mask"), ("Without Mask", "without_mask"),
    ("no-mask", "without_mask"), ("No_Mask", "without_mask"), ("nomask", "without_mask"),
    ("unmasked", "without_mask"),
    ("mask_weared_incorrect", "mask_weared_incorrect"), ("mask_worn_incorrectly", "mask_weared_incorrect"),
    ("Mask Worn Incorrectly", "mask_weared_incorrect"), ("incorrect_mask", "mask_weared_incorrect"),
]


@pytest.mark.parametrize("name,expected", TABLE)
def test_aliases(name, expected):
    assert resolve_names({name: 1}, {}, None) == {name: expected}


@given(st.sampled_from([a for aliases in ALIASES.values() for a in aliases]),
       st.lists(st.sampled_from(["upper", "title", "-", " ", "__"]), max_size=3))
@settings(suppress_health_check=[HealthCheck.too_slow])  # a loaded CI machine draws slowly; the inputs are small
def test_case_and_separators_never_matter(alias, changes):
    name = alias
    for change in changes:
        name = {"upper": name.upper(), "title": name.title()}.get(change) or name.replace("_", change)
    canonical = next(c for c, aliases in ALIASES.items() if alias in aliases)
    assert resolve_names({name: 1}, {}, None) == {name: canonical}


@pytest.mark.parametrize("names,kwargs,expected", [
    ({"With_Masc": 2}, {}, DataError),  # a typo is not a new class
    ({"zebra": 1, "Mask": 2}, {}, DataError),
    ({"zebra": 1}, {"class_map": {"ZEBRA": "with_mask"}}, {"zebra": "with_mask"}),  # --map, compared blind
    ({"zebra": 1}, {"allow_new": True}, {"zebra": "zebra"}),
    ({"zebra": 1, "mask": 1}, {"classes": ["zebra", "mask"]}, {"zebra": "zebra", "mask": "mask"}),  # listed
    ({"apple": 1, "mask": 1}, {"classes": ["with_mask"]}, {"apple": "apple", "mask": "with_mask"}),  # left to drop
    ({"mask": 1}, {"class_map": {"mask": "without_mask"}}, {"mask": "without_mask"}),  # --map beats the table
])
def test_resolution_rules(names, kwargs, expected):
    class_map, classes = kwargs.pop("class_map", {}), kwargs.pop("classes", None)
    if expected is DataError:
        with pytest.raises(DataError, match="unknown class name.*Known classes: with_mask.*--map"):
            resolve_names(names, class_map, classes, **kwargs)
    else:
        assert resolve_names(names, class_map, classes, **kwargs) == expected


def _voc(root, names):
    (root / "annotations").mkdir(parents=True)
    (root / "images").mkdir()
    shutil.copy(SAMPLE / "images" / "maksssksksss231.jpg", root / "images" / "a.jpg")
    boxes = [(n, 10 + 20 * i, 10, 25 + 20 * i, 25) for i, n in enumerate(names)]
    write_voc_xml(root / "annotations" / "a.xml", "a.jpg", (400, 249), boxes)
    return root


def test_convert_reads_aliases_and_refuses_a_typo_leaving_everything_as_it_was(tmp_path, capsys):
    good = _voc(tmp_path / "good", ["With_Mask", "without-mask", "No_Mask", "mask_worn_incorrectly"])
    m = convert("voc", good, tmp_path / "o", split=(1, 0, 0))
    assert m.classes == ["with_mask", "without_mask", "mask_weared_incorrect"]
    assert m.counts["total"]["classes"] == {"mask_weared_incorrect": 1, "with_mask": 1, "without_mask": 2}
    typo = _voc(tmp_path / "typo", ["with_mask", "With_Masc"])
    before = tree_hash(tmp_path)
    assert cli_main(["data", "convert", "--format", "voc", "--source", str(typo), "--out", str(tmp_path / "o"),
                     "--split", "1,0,0"]) == 2
    err = capsys.readouterr().err
    assert "unknown class name(s) 'With_Masc' (1 boxes, e.g. " in err and "a.xml)" in err
    assert tree_hash(tmp_path) == before  # the earlier output too
    assert cli_main(["data", "convert", "--format", "voc", "--source", str(typo), "--out", str(tmp_path / "o2"),
                     "--split", "1,0,0", "--map", "with-masc=with_mask"]) == 0
    assert blind("With_Masc") == "withmasc"

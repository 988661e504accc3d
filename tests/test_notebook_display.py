"""maskdetect.notebook: tables as HTML (no pandas), rounded, in key order, with the index column first."""

from __future__ import annotations

import pytest

from maskdetect import notebook


@pytest.fixture
def shown(monkeypatch):
    displayed = []
    monkeypatch.setattr(notebook, "_display", displayed.append)
    return displayed


def test_ap_table_rounds_and_puts_the_index_first(shown):
    notebook.ap_table({"AP@0.5": {"with_mask": 0.44512, "without_mask": None}, "mAP@0.5": 0.44512,
                       "num_groundtruth": {"with_mask": 368, "without_mask": 84}})
    markup, plain = shown[0]._repr_html_(), repr(shown[0])
    assert markup.startswith("<table><thead><tr><th>class</th><th>AP@0.5</th><th>boxes</th></tr>")
    assert "<td>with_mask</td><td>0.445</td><td>368</td>" in markup
    assert "<td>without_mask</td><td></td><td>84</td>" in markup  # no AP: an empty cell
    assert plain.splitlines()[-1] == "mean (mAP@0.5)  0.445  452"


def test_data_table_has_one_row_per_split_and_every_class_column(shown):
    notebook.data_table({"train": {"images": 3, "boxes": 5, "classes": {"with_mask": 5}},
                         "val": {"images": 1, "boxes": 2, "classes": {"without_mask": 2}}})
    assert repr(shown[0]).splitlines() == ["split  images  boxes  with_mask  without_mask",
                                           "train  3  5  5  ", "val  1  2    2"]


def test_cells_are_escaped(shown):
    notebook.show_table([{"label": "<b>x</b>"}])
    assert "&lt;b&gt;x&lt;/b&gt;" in shown[0]._repr_html_()

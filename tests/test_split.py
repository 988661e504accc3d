"""maskdetect.data.split: the split fractions, seeded and stratified, duplicates on one side."""

from __future__ import annotations

from collections import Counter

import pytest

from maskdetect.data.split import parse_split, stratified_split
from maskdetect.errors import ConfigError


def test_parse_split_normalises_and_refuses_nonsense():
    assert parse_split("8,1,1") == pytest.approx((0.8, 0.1, 0.1))
    assert parse_split([1, 0, 0]) == (1.0, 0.0, 0.0)
    assert parse_split(" Keep ") == "keep"
    for bad in ("0.8,0.2", "a,b,c", "0,0,0", "-1,1,1", "nan,1,1"):
        with pytest.raises(ConfigError, match="split"):
            parse_split(bad)


def test_rare_classes_reach_every_split_and_duplicates_stay_together():
    labels = [{"with_mask"}] * 80 + [{"with_mask", "without_mask"}] * 15 + [{"mask_weared_incorrect"}] * 5
    keys = [f"img{i}" for i in range(100)]
    keys[1] = keys[0]  # byte-identical images
    splits = stratified_split(labels, keys, (0.6, 0.2, 0.2), seed=3)
    assert splits[0] == splits[1]
    sizes = Counter(splits)
    assert abs(sizes["train"] - 60) <= 3 and abs(sizes["val"] - 20) <= 3 and abs(sizes["test"] - 20) <= 3
    for rare in ("without_mask", "mask_weared_incorrect"):
        assert {s for s, l in zip(splits, labels) if rare in l} == {"train", "val", "test"}, rare


def test_the_same_seed_gives_the_same_split_another_seed_another():
    labels = [{"with_mask"}] * 30 + [{"without_mask"}] * 10
    keys = [str(i) for i in range(40)]
    first = stratified_split(labels, keys, (0.5, 0.5, 0.0), seed=0)
    assert first == stratified_split(labels, keys, (0.5, 0.5, 0.0), seed=0)
    assert first != stratified_split(labels, keys, (0.5, 0.5, 0.0), seed=1)
    assert "test" not in first  # a zero fraction gets nothing

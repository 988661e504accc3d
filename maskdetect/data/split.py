"""Seeded, class-stratified train/val/test split that keeps byte-identical images on one side.

Iterative stratification (Sechidis et al., 2011) over groups of images: images with the same sha256 form one
group; the rarest class still unassigned is placed first, each group going to the split that most lacks that
class (ties: the split that most lacks images, then a seeded coin).
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Sequence

from maskdetect.data.records import SPLITS
from maskdetect.errors import ConfigError


def parse_split(text: str | Sequence[float]) -> tuple[float, float, float] | str:
    """``"0.8,0.1,0.1"`` (or a 3-sequence) as normalised fractions; ``"keep"`` keeps the source's own splits."""
    if isinstance(text, str) and text.strip().lower() == "keep":
        return "keep"
    try:
        parts = [float(v) for v in (text.split(",") if isinstance(text, str) else text)]
    except (TypeError, ValueError):
        raise ConfigError(f"split {text!r}: expected three numbers like 0.8,0.1,0.1 (train,val,test) or 'keep'.") \
            from None
    if len(parts) != 3 or any(not v >= 0 for v in parts) or sum(parts) <= 0:
        raise ConfigError(f"split {text!r}: expected three non-negative numbers with a positive sum, e.g. "
                          f"0.8,0.1,0.1 or 1,0,0.")
    total = sum(parts)
    return tuple(v / total for v in parts)  # type: ignore[return-value]


def stratified_split(labels: Sequence[set[str]], group_keys: Sequence[str], fractions: Sequence[float],
                     seed: int = 0) -> list[str]:
    """Split name for each image.

    Args:
        labels: the classes present in each image.
        group_keys: images with equal keys (e.g. sha256 of the bytes) always get the same split.
        fractions: wanted share of images for train, val, test.
        seed: the same inputs and seed give the same split.
    """
    rng = random.Random(seed)
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(group_keys):
        groups.setdefault(key, []).append(i)
    order = sorted(groups)
    rng.shuffle(order)
    group_labels = {g: set().union(*(labels[i] for i in groups[g])) for g in order}
    active = [k for k, f in enumerate(fractions) if f > 0]
    class_total = Counter(c for g in order for c in group_labels[g])
    want_class = {k: {c: fractions[k] * n for c, n in class_total.items()} for k in active}
    want_images = {k: fractions[k] * len(labels) for k in active}
    assigned: dict[str, int] = {}
    remaining = list(order)

    def place(g: str, by_class: str | None) -> None:
        def need(k: int) -> tuple:
            return (want_class[k][by_class] if by_class else 0.0, want_images[k], rng.random())

        k = max(active, key=need)
        assigned[g] = k
        for c in group_labels[g]:
            want_class[k][c] -= 1
        want_images[k] -= len(groups[g])

    while remaining:
        left = Counter(c for g in remaining for c in group_labels[g])
        if not left:
            for g in remaining:
                place(g, None)
            break
        rarest = min(left, key=lambda c: (left[c], c))
        todo = [g for g in remaining if rarest in group_labels[g]]
        for g in todo:
            place(g, rarest)
        remaining = [g for g in remaining if g not in assigned]
    out = [""] * len(labels)
    for g, k in assigned.items():
        for i in groups[g]:
            out[i] = SPLITS[k]
    return out

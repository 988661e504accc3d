"""Class names as data sets really write them, onto our three classes: case- and separator-blind aliases
(``Mask``, ``with mask``, ``no-mask``, ``No_Mask``, ``mask_worn_incorrectly``, ...), and an error for a name
nobody mapped, so a typo never becomes a new class silently.

Precedence for each name found in the data: ``--map OLD=NEW`` (OLD matched blind) > a name listed in
``--classes`` exactly > the alias table > a new class of its own if ``allow_new`` > a DataError listing the
unknown names, the known ones and the fixes.

Example:
    >>> resolve_names({"Mask": 3, "without-mask": 1}, {}, None)
    {'Mask': 'with_mask', 'without-mask': 'without_mask'}
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

from maskdetect.errors import DataError

#: Our classes and the names data sets use for them (compared with :func:`blind`).
ALIASES: dict[str, tuple[str, ...]] = {
    "with_mask": ("with_mask", "mask", "masked", "with mask", "wearing mask", "wearing_mask", "face_mask",
                  "face with mask", "mask_on"),
    "without_mask": ("without_mask", "no_mask", "nomask", "no-mask", "without mask", "unmasked", "no mask",
                     "not wearing mask", "face_no_mask", "mask_off"),
    "mask_weared_incorrect": ("mask_weared_incorrect", "mask_worn_incorrectly", "mask_worn_incorrect",
                              "mask_wear_incorrect", "incorrect_mask", "incorrectly_worn_mask", "mask_incorrect",
                              "improper_mask", "improperly_worn_mask", "mask_not_properly_worn", "partial_mask",
                              "mask_below_nose", "mask_chin"),
}


def blind(name: str) -> str:
    """The comparison key: lower case, without separators (``No_Mask`` == ``no-mask`` == ``no mask``)."""
    return re.sub(r"[^0-9a-z]+", "", name.lower())


_BY_KEY = {blind(alias): canonical for canonical, aliases in ALIASES.items() for alias in aliases}


def blind_map(pairs) -> dict[str, str]:
    """``{blind(OLD): NEW}`` of ``--map`` pairs; one OLD (compared blind) mapped to two different NEW names is a
    DataError (keeping the last would relabel silently). Repeating the same pair is fine."""
    out: dict[str, str] = {}
    first: dict[str, str] = {}
    for old, new in pairs:
        key = blind(old)
        if key in out and out[key] != new:
            raise DataError(f"--map {first[key]}={out[key]} and --map {old}={new} map one class to two names; keep "
                            f"one of them.")
        out[key], first[key] = new, first.get(key, old)
    return out


def resolve_names(counts: Mapping[str, int], class_map: Mapping[str, str], classes: Sequence[str] | None, *,
                  allow_new: bool = False, examples: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{name in the data: class name}`` for every name of `counts` (``{name: boxes}``).

    Args:
        class_map: the user's ``--map`` (``{OLD: NEW}``, OLD compared blind).
        classes: the user's ``--classes``: names listed there are kept as written; others outside it are left
            for the converter to drop (so they are not an error here).
        allow_new: keep unknown names as classes of their own instead of raising.
        examples: ``{name: a file that uses it}`` for the error message.

    Raises:
        DataError: names that are neither mapped, listed, aliases nor allowed.
    """
    user_map = blind_map(class_map.items())
    listed = set(classes or ())
    resolved: dict[str, str] = {}
    unknown = []
    for name in counts:
        key = blind(name)
        if key in user_map:
            resolved[name] = user_map[key]
        elif name in listed:
            resolved[name] = name
        elif key in _BY_KEY:
            resolved[name] = _BY_KEY[key]
        elif allow_new or classes:
            resolved[name] = name
        else:
            unknown.append(name)
    if unknown:
        where = examples or {}
        shown = ", ".join(f"{n!r} ({counts[n]} boxes" + (f", e.g. {where[n]})" if n in where else ")")
                          for n in sorted(unknown))
        known = "; ".join(f"{c} (also {', '.join(a for a in aliases[1:6])}, ...)" for c, aliases in ALIASES.items())
        raise DataError(f"unknown class name(s) {shown}. Known classes: {known}; names are compared without case "
                        f"or separators. Map each one, e.g. --map {sorted(unknown)[0]}=without_mask, or keep them "
                        f"as classes of their own with --allow-new-classes (or list them in --classes).")
    return resolved


__all__ = ["ALIASES", "blind", "blind_map", "resolve_names"]

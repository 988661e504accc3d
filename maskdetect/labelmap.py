"""Label maps: the OD API's ``item { id name }`` text format, ids 1-based (0 is the background)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

from maskdetect.errors import DataError
from maskdetect.fileio import atomic_write_text

CANONICAL_NAMES = ("label_map.pbtxt", "labelmap.pbtxt")
_ITEM = re.compile(r"item\s*\{(.*?)\}", re.S)
_FIELD = re.compile(r"""(\w+)\s*:\s*(?:"([^"]*)"|'([^']*)'|([^\s}]+))""")


def format_label_map(class_names: Sequence[str]) -> str:
    """Text of a label map giving ``class_names[i]`` the id ``i + 1``."""
    return "".join(f'item {{\n  id: {i}\n  name: "{name}"\n}}\n' for i, name in enumerate(class_names, 1))


def write_label_map(path: str | Path, class_names: Sequence[str]) -> Path:
    return atomic_write_text(path, format_label_map(class_names))


def find_label_map(near: str | Path) -> Path | None:
    """The label map that goes with a file or folder (a TFRecord, an export, a ``.tflite``), or None.

    Looks in the folder (`near` itself if it is one, else its folder), then one folder up: ``label_map.pbtxt``,
    ``labelmap.pbtxt``, then any ``*label_map*``/``*labelmap*``/``*.pbtxt`` that reads as a label map. (An OD API
    export holds ``saved_model/``; a run holds ``export/``; a Roboflow export keeps it beside the TFRecords.)
    A ``label_map.pbtxt`` or ``labelmap.pbtxt`` that does not read is an error (:class:`DataError`), never skipped
    for another file: its ids name the records' classes.
    """
    near = Path(near)
    first = near if near.is_dir() else near.parent
    for folder in (first, first.parent):
        candidates = [folder / "label_map.pbtxt", folder / "labelmap.pbtxt", *sorted(folder.glob("*label_map*.pbtxt")),
                      *sorted(folder.glob("*labelmap*.pbtxt")), *sorted(folder.glob("*.pbtxt"))]
        for candidate in dict.fromkeys(candidates):
            if not candidate.is_file():
                continue
            if candidate.name in CANONICAL_NAMES:  # the label map of this folder: a broken one is an error
                read_label_map(candidate)
                return candidate
            try:
                read_label_map(candidate)
            except DataError:
                continue
            return candidate
    return None


def read_label_map(path: str | Path) -> list[str]:
    """Class names ordered by id (``names[0]`` has id 1). Reads ours, Roboflow's and the OD API's files
    (``name`` or ``display_name``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"{path}: cannot read the label map ({exc.strerror}). Pass an existing .pbtxt file.") from exc
    by_id: dict[int, str] = {}
    for body in _ITEM.findall(text):
        fields = {m[0]: m[1] or m[2] or m[3] for m in _FIELD.findall(body)}
        if "id" not in fields or not ({"name", "display_name"} & fields.keys()):
            raise DataError(f"{path}: an item lacks an id or a name: {body.strip()!r}. Each item needs both.")
        try:
            item_id = int(fields["id"])
        except ValueError:
            raise DataError(f"{path}: id {fields['id']!r} is not a whole number; each item's id is 1, 2, 3, ...") from None
        if item_id < 1:
            raise DataError(f"{path}: id {item_id} is reserved for the background; ids start at 1.")
        name = fields.get("name") or fields["display_name"]
        if item_id in by_id:
            raise DataError(f"{path}: id {item_id} is given twice ({by_id[item_id]!r} and {name!r}); the records' "
                            f"classes would depend on which one wins. Give each class its own id.")
        by_id[item_id] = name
    if not by_id:
        raise DataError(f"{path}: no `item {{ id: N name: \"...\" }}` entries found; is this a label map?")
    if sorted(by_id) != list(range(1, len(by_id) + 1)):
        raise DataError(f"{path}: ids {sorted(by_id)} are not 1..{len(by_id)}; renumber them without gaps.")
    return [by_id[i] for i in range(1, len(by_id) + 1)]

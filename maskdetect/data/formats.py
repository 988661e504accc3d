"""Readers for annotation formats: each yields :class:`Item` (usable) or :class:`Skip` (unusable, with reason).

A reader raises DataError only for problems with the dataset as a whole (no such folder, no annotation files,
an unreadable class list); a bad single file becomes a Skip, a bad single box an ``Item.dropped`` entry.

Formats:
    voc:   ``annotations/*.xml`` + ``images/`` (or XML beside the images); ``<filename>`` names the image.
    kitti: ``label_2/*.txt`` (15 fields: ``class trunc occ alpha x1 y1 x2 y2 h w l x y z ry``) + ``image_2/``.
    coco:  a JSON file, or a folder with ``annotations.json`` / ``_annotations.coco.json``; ``bbox`` is x, y, w, h.
    yolo:  ``images/`` + ``labels/*.txt`` (``cls cx cy w h`` normalised) + ``classes.txt`` or ``data.yaml``.
    tfrecord: see :mod:`maskdetect.data.tfrecord`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable, Iterator

from maskdetect.data.records import Item, RawBox, Skip, split_from_name
from maskdetect.errors import DataError
from maskdetect.media import IMAGE_SUFFIXES

#: A dataset's images; a GIF there is one still image (see :mod:`maskdetect.media`).
DATASET_IMAGE_SUFFIXES = IMAGE_SUFFIXES + (".gif",)
FORMATS = ("voc", "kitti", "coco", "yolo", "tfrecord")

Reader = Callable[[Path], Iterator["Item | Skip"]]


def read_dataset(fmt: str, source: str | Path) -> Iterator[Item | Skip]:
    """Items of the dataset at ``source`` in format ``fmt`` (one of :data:`FORMATS`), in a stable order."""
    source = Path(source)
    if fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}.")
    if not source.exists():
        raise DataError(f"{source}: no such file or folder. Pass the dataset folder with --source.")
    if fmt == "tfrecord":
        from maskdetect.data.tfrecord import read_tfrecord_items

        return read_tfrecord_items(source)
    return {"voc": read_voc, "kitti": read_kitti, "coco": read_coco, "yolo": read_yolo}[fmt](source)


def _number(text: object) -> float:
    value = float(str(text).strip())
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not finite")
    return value


def _find_image(stem_or_name: str, folders: list[Path]) -> Path | None:
    name = Path(stem_or_name.replace("\\", "/")).name
    for folder in folders:
        candidate = folder / name
        if name and candidate.is_file():
            return candidate
    stem = Path(name).stem
    for folder in folders:
        for suffix in DATASET_IMAGE_SUFFIXES + tuple(s.upper() for s in DATASET_IMAGE_SUFFIXES):
            candidate = folder / (stem + suffix)
            if stem and candidate.is_file():
                return candidate
    return None


def _unique(folders: list[Path]) -> list[Path]:
    seen, out = set(), []
    for folder in folders:
        if folder not in seen and folder.is_dir():
            seen.add(folder)
            out.append(folder)
    return out


# --------------------------------------------------------------------------- VOC
def read_voc(source: Path) -> Iterator[Item | Skip]:
    xmls = [source] if source.is_file() else sorted(p for p in source.rglob("*.xml") if p.is_file())
    if not xmls:
        raise DataError(f"{source}: no Pascal VOC *.xml files found. Expected annotations/*.xml beside images/.")
    root = source if source.is_dir() else source.parent
    for xml in xmls:
        yield _read_voc_file(xml, root)


def _read_voc_file(xml: Path, root: Path) -> Item | Skip:
    import defusedxml.ElementTree as ET
    from defusedxml import DefusedXmlException

    try:
        tree = ET.parse(xml)
    except (ET.ParseError, DefusedXmlException, ValueError, OSError, UnicodeError) as exc:
        return Skip(str(xml), f"not valid Pascal VOC XML ({exc})", "Fix or delete the file.")
    ann = tree.getroot()
    if ann is None or ann.tag != "annotation":
        return Skip(str(xml), "root element is not <annotation>", "Fix or delete the file.")
    filename = (ann.findtext("filename") or "").strip()
    folders = _unique([xml.parent.parent / "images", xml.parent.parent / "JPEGImages", xml.parent,
                       root / "images", root / "JPEGImages", root])
    image = _find_image(filename or xml.stem, folders)
    if image is None:
        named = f"<filename>{filename}</filename>" if filename else f"(no <filename>; tried {xml.stem}.*)"
        return Skip(str(xml), f"image {named} not found in {', '.join(str(f) for f in folders)}",
                    "Put the image in images/ beside annotations/, or fix <filename>.")
    declared = None
    try:
        w, h = int(_number(ann.findtext("size/width"))), int(_number(ann.findtext("size/height")))
        declared = (w, h) if w > 0 and h > 0 else None
    except (TypeError, ValueError, OverflowError):
        pass
    item = Item(key=str(xml), filename=image.name, image=image, declared_wh=declared,
                split=split_from_name(xml.parent) or split_from_name(image.parent))
    for i, obj in enumerate(ann.iter("object")):
        name = (obj.findtext("name") or "").strip()
        box = obj.find("bndbox")
        desc = f"object {i} {name!r}"
        if not name:
            item.dropped.append((desc, "no <name>"))
            continue
        try:
            xyxy = tuple(_number(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))  # type: ignore[union-attr]
        except (AttributeError, TypeError, ValueError):
            item.dropped.append((desc, "missing or non-numeric <bndbox> coordinates"))
            continue
        item.boxes.append(RawBox(name, xyxy))  # type: ignore[arg-type]
    return item


def _label_lines(txt: Path) -> list[tuple[str, list[str]]] | Skip:
    """``("line N", fields)`` for each non-empty line of a text label file (KITTI, YOLO), or a Skip."""
    try:
        text = txt.read_text(encoding="utf-8")
    except (OSError, UnicodeError) as exc:
        return Skip(str(txt), f"cannot read the label file ({exc})", "Fix or delete the file.")
    return [(f"line {n}", line.split()) for n, line in enumerate(text.splitlines(), 1) if line.split()]


# --------------------------------------------------------------------------- KITTI
def read_kitti(source: Path) -> Iterator[Item | Skip]:
    label_dirs = [source] if source.name == "label_2" else sorted(p for p in source.rglob("label_2") if p.is_dir())
    labels = [t for d in label_dirs for t in sorted(d.glob("*.txt"))]
    if not labels:
        raise DataError(f"{source}: no KITTI label_2/*.txt files found. Expected label_2/ beside image_2/.")
    for txt in labels:
        image = _find_image(txt.stem, _unique([txt.parent.parent / "image_2", txt.parent.parent / "images"]))
        if image is None:
            yield Skip(str(txt), f"no image {txt.stem}.* in {txt.parent.parent / 'image_2'}",
                       "Put the image in image_2/ with the same file stem.")
            continue
        lines = _label_lines(txt)
        if isinstance(lines, Skip):
            yield lines
            continue
        item = Item(key=str(txt), filename=image.name, image=image, split=split_from_name(txt.parent.parent))
        for desc, fields in lines:
            if fields[0] == "DontCare":
                continue
            if len(fields) not in (15, 16):
                item.dropped.append((desc, f"{len(fields)} fields, KITTI lines have 15 (16 with a score)"))
                continue
            try:
                xyxy = tuple(_number(v) for v in fields[4:8])
            except ValueError:
                item.dropped.append((desc, "non-numeric box coordinates (fields 5-8)"))
                continue
            item.boxes.append(RawBox(fields[0], xyxy))  # type: ignore[arg-type]
        yield item


# --------------------------------------------------------------------------- COCO
COCO_NAMES = ("_annotations.coco.json", "annotations.json")


def read_coco(source: Path) -> Iterator[Item | Skip]:
    if source.is_file():
        files = [source]
    else:
        files = sorted(p for p in source.rglob("*.json") if p.name in COCO_NAMES or p.name.startswith("instances_"))
        if not files:
            files = sorted(source.glob("*.json"))
    if not files:
        raise DataError(f"{source}: no COCO JSON found. Pass the .json file, or a folder with annotations.json "
                        f"or _annotations.coco.json.")
    for path in files:
        yield from _read_coco_file(path, source if source.is_dir() else path.parent)


def _read_coco_file(path: Path, root: Path) -> Iterator[Item | Skip]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        images = data["images"]
        annotations = data.get("annotations", [])
        categories = _coco_categories(path, data.get("categories", []))
        if not isinstance(images, list) or not isinstance(annotations, list):
            raise TypeError("'images' and 'annotations' must be lists")
    except (OSError, UnicodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        yield Skip(str(path), f"not a COCO detection JSON ({type(exc).__name__}: {exc})",
                   "It needs 'images', 'annotations' and 'categories' lists.")
        return
    _check_unique_image_ids(path, images)
    by_image: dict[object, list[dict]] = {}
    for ann in annotations:
        if isinstance(ann, dict):
            by_image.setdefault(_hashable(ann.get("image_id")), []).append(ann)
    folders = _unique([path.parent, path.parent / "images", path.parent.parent / "images", root / "images", root])
    split = split_from_name(path.parent) or split_from_name(path)
    for idx, img in enumerate(images):
        key = f"{path}#images[{idx}]"
        if not isinstance(img, dict) or not isinstance(img.get("file_name"), str):
            yield Skip(key, "image entry without a 'file_name'", "Fix the JSON.")
            continue
        image = _find_image(img["file_name"], folders)
        if image is None:
            yield Skip(key, f"image {img['file_name']!r} not found in {', '.join(str(f) for f in folders)}",
                       "Put the images beside the JSON or in images/.")
            continue
        declared = None
        try:
            w, h = int(img.get("width")), int(img.get("height"))
            declared = (w, h) if w > 0 and h > 0 else None
        except (TypeError, ValueError, OverflowError):
            pass
        item = Item(key=key, filename=image.name, image=image, declared_wh=declared, split=split)
        for j, ann in enumerate(by_image.get(_hashable(img.get("id")), [])):
            desc = f"annotation id {ann.get('id', j)}"
            name = categories.get(_hashable(ann.get("category_id")))
            if name is None:
                item.dropped.append((desc, f"category_id {ann.get('category_id')!r} is not in 'categories'"))
                continue
            if ann.get("iscrowd"):
                item.dropped.append((desc, "iscrowd=1 (a crowd region, not one face)"))
                continue
            try:
                x, y, w, h = (_number(v) for v in ann["bbox"])
            except (KeyError, TypeError, ValueError):
                item.dropped.append((desc, "missing or non-numeric 'bbox' [x, y, w, h]"))
                continue
            item.boxes.append(RawBox(name, (x, y, x + w, y + h)))
        yield item


def _coco_categories(path: Path, categories: list) -> dict[object, str]:
    """``{category id: name}``; one id given two names is a DataError (which one the boxes mean is unknown)."""
    names: dict[object, str] = {}
    for c in categories:
        cid, name = _hashable(c["id"]), str(c["name"])
        if cid in names and names[cid] != name:
            raise DataError(f"{path}: category id {c['id']!r} is given twice, as {names[cid]!r} and {name!r}; its "
                            f"boxes could be either. Give each category its own id.")
        names[cid] = name
    return names


def _check_unique_image_ids(path: Path, images: list) -> None:
    """Annotations find their image by id: two images sharing one would get each other's boxes (DataError)."""
    seen: dict[object, object] = {}
    for img in images:
        if not isinstance(img, dict) or "id" not in img:
            continue
        key = _hashable(img["id"])
        if key in seen:
            raise DataError(f"{path}: images {seen[key]!r} and {img.get('file_name')!r} share the id {img['id']!r}, "
                            f"so each would get the other's boxes. Give every image its own id.")
        seen[key] = img.get("file_name")


def _hashable(value: object) -> object:
    try:
        hash(value)
        return value
    except TypeError:
        return repr(value)


# --------------------------------------------------------------------------- YOLO
def read_yolo(source: Path) -> Iterator[Item | Skip]:
    names = _yolo_names(source)
    image_dirs = [source] if source.name == "images" else sorted(p for p in source.rglob("images") if p.is_dir())
    images = [p for d in image_dirs for p in sorted(d.rglob("*")) if p.suffix.lower() in DATASET_IMAGE_SUFFIXES]
    if not images:
        raise DataError(f"{source}: no images/ folder with images found. YOLO data needs images/ and labels/.")
    for image in images:
        image_dir = next(d for d in image_dirs if d in image.parents)
        txt = image_dir.parent / "labels" / image.relative_to(image_dir).with_suffix(".txt")
        if not txt.is_file():
            yield Skip(str(image), f"no label file {txt}", "Add labels/<stem>.txt (one 'cls cx cy w h' per face).")
            continue
        lines = _label_lines(txt)
        if isinstance(lines, Skip):
            yield lines
            continue
        item = Item(key=str(txt), filename=image.name, image=image, split=split_from_name(image_dir.parent))
        for desc, fields in lines:
            if len(fields) != 5:
                item.dropped.append((desc, f"{len(fields)} fields, expected 'cls cx cy w h'"))
                continue
            try:
                cls = int(fields[0])
                cx, cy, w, h = (_number(v) for v in fields[1:])
            except ValueError:
                item.dropped.append((desc, "non-numeric fields"))
                continue
            if cls not in names:
                item.dropped.append((desc, f"class id {cls} is not one of the ids the class list names "
                                           f"({', '.join(map(str, sorted(names)))})"))
                continue
            item.boxes.append(RawBox(names[cls], (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), normalised=True))
        yield item


def _yolo_names(source: Path) -> dict[int, str]:
    """``{class id: name}`` from ``classes.txt`` (line N = id N) or ``data.yaml`` ``names`` (a list, or a mapping
    whose ids are kept as written: ``{0: a, 2: b}`` has no class 1, it does not shift ``b`` to 1)."""
    root = source.parent if source.name == "images" else source
    classes_txt = next((p for p in (root / "classes.txt", root / "obj.names") if p.is_file()), None)
    if classes_txt is not None:
        try:
            names = [line.strip() for line in classes_txt.read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, UnicodeError) as exc:
            raise DataError(f"{classes_txt}: cannot read the class list ({exc}). One class name per line.") from None
        if names:
            return dict(enumerate(names))
        raise DataError(f"{classes_txt}: empty class list. Write one class name per line.")
    data_yaml = next((p for p in (root / "data.yaml", root / "dataset.yaml") if p.is_file()), None)
    if data_yaml is None:
        raise DataError(f"{root}: no classes.txt or data.yaml naming the classes. Add classes.txt (one name a line).")
    import yaml

    try:
        names = yaml.safe_load(data_yaml.read_text(encoding="utf-8"))["names"]
        if isinstance(names, list):
            names = dict(enumerate(names))
        if not isinstance(names, dict) or not names:
            raise TypeError("'names' is not a non-empty list or mapping")
        by_id: dict[int, str] = {}
        for key, name in names.items():
            if isinstance(key, bool) or not isinstance(key, int) and not (isinstance(key, str) and key.isdigit()):
                raise ValueError(f"class id {key!r} is not a whole number")
            if int(key) in by_id:
                raise ValueError(f"class id {int(key)} is given twice")
            by_id[int(key)] = str(name)
        return by_id
    except (OSError, UnicodeError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{data_yaml}: cannot read 'names' ({type(exc).__name__}: {exc}). Write "
                        f"`names: [with_mask, without_mask, ...]` or `names: {{0: with_mask, 1: without_mask}}`.") \
            from None

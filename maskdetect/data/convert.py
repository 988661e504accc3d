"""``convert``: any supported dataset -> sharded OD API TFRecords + ``label_map.pbtxt`` + ``manifest.json``.

Everything is read, checked and converted before anything is written, and the output folder appears only when
complete. It may not be, hold or lie inside the source, and replaces an existing folder only if an earlier
``convert`` made it and it holds nothing else (:mod:`maskdetect.guard`). Bad inputs are skipped and listed in the manifest, or, with
``strict=True``, stop the conversion with a DataError naming the file and the fix.

Example:
    >>> from maskdetect.data import convert
    >>> m = convert("voc", "sample/face-mask", "workspace/data", split=(0.8, 0.1, 0.1), seed=0)  # doctest: +SKIP
    >>> m.counts["train"]["images"]  # doctest: +SKIP
    28
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import maskdetect
from maskdetect.data.classnames import blind_map, resolve_names
from maskdetect.data.images import OUTSIDE_TOLERANCE_PX, Loaded, load_item
from maskdetect.data.records import SPLITS, Item, Sample, Skip
from maskdetect.data.formats import read_dataset
from maskdetect.data.split import parse_split, stratified_split
from maskdetect.errors import ConfigError, DataError
from maskdetect.fileio import atomic_write_json
from maskdetect.guard import check_paths, owned_dir
from maskdetect.labelmap import write_label_map

log = logging.getLogger(__name__)

SHARD_TARGET_BYTES = 64 * 2**20  # about this much image data per shard
COMMAND = "data convert"


@dataclass
class Manifest:
    """What ``convert`` wrote (also saved as ``DIR/manifest.json``).

    Attributes:
        out: output folder. ``out/label_map.pbtxt``, ``out/{train,val,test}-*.tfrecord``.
        classes: class names in label-map order (id = index + 1).
        counts: per split ``{"images", "boxes", "classes": {name: boxes}}``, plus ``"total"``.
        files: per output file ``{"name", "split", "records", "sha256", "bytes"}``.
        options: the options used (format, source, split, class_map, classes, seed, strict, min_blur, workers).
        skipped: unusable inputs ``{"item", "reason"}``.
        dropped_boxes: boxes left out ``{"item", "box", "reason"}`` (zero area, unknown class, blurred, ...).
        clipped_boxes: boxes cut back to the image ``{"item", "box", "outside_px"}``.
        duplicates: groups of byte-identical images (kept together in one split).
        warnings: anything else worth reading (e.g. annotation size differs from the image).
        images_per_s: conversion speed (not written to manifest.json, which stays reproducible).
    """

    out: str
    classes: list[str]
    counts: dict
    files: list[dict]
    options: dict
    skipped: list[dict] = field(default_factory=list)
    dropped_boxes: list[dict] = field(default_factory=list)
    clipped_boxes: list[dict] = field(default_factory=list)
    duplicates: list[list[str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    images_per_s: float = 0.0
    maskdetect_version: str = maskdetect.__version__

    @property
    def label_map_path(self) -> Path:
        return Path(self.out) / "label_map.pbtxt"

    def tfrecord_glob(self, split: str) -> str:
        """E.g. ``DIR/train-*.tfrecord`` (the OD API's ``input_path``)."""
        return str(Path(self.out) / f"{split}-*.tfrecord")

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("images_per_s")
        return d


def parse_class_map(pairs: Sequence[str] | Mapping[str, str] | None) -> dict[str, str]:
    """``["mask=with_mask", "no-mask=without_mask"]`` (or a dict) as ``{source_name: new_name}``."""
    if pairs is None:
        return {}
    if isinstance(pairs, Mapping):
        items = list(pairs.items())
    else:
        items = []
        for pair in pairs:
            old, sep, new = str(pair).partition("=")
            if not sep or not old.strip() or not new.strip():
                raise ConfigError(f"--map {pair!r}: expected OLD=NEW, e.g. mask=with_mask.")
            items.append((old.strip(), new.strip()))
    blind_map((str(k), str(v)) for k, v in items)  # one class mapped to two names: an error, not the last kept
    return {str(k): str(v) for k, v in items}


def class_order(present: set[str]) -> list[str]:
    """The three :data:`maskdetect.CLASSES` first (those present), then the others sorted."""
    return [c for c in maskdetect.CLASSES if c in present] + sorted(present - set(maskdetect.CLASSES))


def convert(format: str, source: str | Path, out: str | Path, *,
            split: Sequence[float] | str = (0.8, 0.1, 0.1), class_map: Mapping[str, str] | Sequence[str] | None = None,
            classes: Sequence[str] | None = None, seed: int = 0, strict: bool = False,
            min_blur: float | None = None, workers: int | None = None, num_shards: int | None = None,
            allow_new_classes: bool = False) -> Manifest:
    """Convert the dataset at ``source`` into TFRecords in ``out`` and return the manifest.

    Args:
        format: ``voc``, ``kitti``, ``coco``, ``yolo`` or ``tfrecord``.
        source: dataset folder (or file: a COCO JSON, a TFRecord).
        out: output folder; replaced atomically when the conversion succeeds (see :func:`maskdetect.guard.owned_dir`).
        split: train, val, test fractions (``(1, 0, 0)`` puts everything in train), or ``"keep"`` to keep the
            source's own splits (from folder/file names such as Roboflow's ``train/``, ``valid/``, ``test/``).
        class_map: renames/merges classes, ``{"mask": "with_mask"}`` or ``["mask=with_mask", ...]`` (names
            compared without case or separators). Names data sets use for our classes (``Mask``, ``no-mask``,
            ``mask_worn_incorrectly``, ...) are mapped anyway (:mod:`maskdetect.data.classnames`).
        classes: the allowed class names (after ``class_map``) in label-map order; boxes of other classes are
            dropped (or an error with ``strict``). Default: every class found, :data:`maskdetect.CLASSES` first.
        seed: split seed.
        strict: raise DataError on the first bad input instead of skipping it.
        min_blur: drop faces whose crop has a Laplacian variance below this (images left without faces too).
        workers: threads decoding/encoding images (default: all cores).
        num_shards: files per split (default: about one per 64 MB of images).
        allow_new_classes: keep class names that are neither ours, aliases, mapped nor listed as classes of
            their own (default: a DataError listing them).

    Raises:
        DataError: unreadable dataset, no usable image, or (``strict``) any bad input.
        ConfigError: invalid options. OutputError (a ConfigError): `out` is, holds or lies inside `source`, or is a
            folder `convert` did not make.
    """
    started = time.perf_counter()
    fractions = parse_split(split) if isinstance(split, str) else parse_split(list(split))
    mapping = parse_class_map(class_map)
    allowed = list(dict.fromkeys(classes)) if classes else None
    if min_blur is not None and not min_blur >= 0:
        raise ConfigError(f"min_blur {min_blur!r}: expected a non-negative number (e.g. 20).")
    if num_shards is not None and num_shards < 1:
        raise ConfigError(f"num_shards {num_shards!r}: expected a positive number of files per split.")
    workers = max(1, workers or os.cpu_count() or 1)
    source, out = Path(source), Path(out)
    options = {"format": format, "source": str(source), "split": fractions if fractions == "keep" else list(fractions),
               "class_map": mapping, "classes": allowed, "seed": seed, "strict": strict, "min_blur": min_blur,
               "workers": workers, "num_shards": num_shards, "allow_new_classes": allow_new_classes}

    check_paths({"--source": source}, {"--out": out}, folders=("--out",))
    with owned_dir(out, COMMAND, legacy_files=_earlier_output_files) as tmp:
        spool_path = tmp / ".spool"
        manifest = _run(format, source, tmp, spool_path, fractions, mapping, allowed, seed, strict, min_blur,
                        workers, num_shards, options)
        spool_path.unlink(missing_ok=True)
        manifest.out = str(out)
        atomic_write_json(tmp / "manifest.json", manifest.to_dict())
        _default_permissions(tmp)
    manifest.images_per_s = round(manifest.counts["total"]["images"] / (time.perf_counter() - started), 1)
    log.info("wrote %s: %s images (%s), %d skipped, %d boxes dropped, %.1f images/s", out,
             manifest.counts["total"]["images"],
             ", ".join(f"{s} {manifest.counts[s]['images']}" for s in SPLITS if s in manifest.counts),
             len(manifest.skipped), len(manifest.dropped_boxes), manifest.images_per_s)
    return manifest


def _default_permissions(folder: Path) -> None:
    """Temporary files are created private (0600/0700); give the finished output the usual umask permissions."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for path in folder.iterdir():
        path.chmod(0o666 & ~umask)


def _earlier_output_files(folder: Path) -> set[str] | None:
    """The files a ``convert`` from before the ownership marker wrote (its manifest lists them), or None."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        names = {f["name"] for f in manifest["files"]} if "maskdetect_version" in manifest else None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return None if names is None else names | {"manifest.json", "label_map.pbtxt"}


def _run(fmt, source, tmp: Path, spool_path: Path, fractions, mapping, allowed, seed, strict, min_blur, workers,
         num_shards, options) -> Manifest:
    from tqdm.auto import tqdm

    items: list[Item] = []
    skipped: list[dict] = []
    for entry in read_dataset(fmt, source):
        if isinstance(entry, Skip):
            _skip(entry, strict, skipped)
        else:
            items.append(entry)
    if not items and not skipped:
        raise DataError(f"{source}: no annotated images found. Check --format {fmt} and the folder layout.")
    mapping = _resolve_class_names(items, mapping, allowed, options["allow_new_classes"])

    samples: list[Sample] = []
    offsets: list[tuple[int, int]] = []
    dropped: list[dict] = []
    clipped: list[dict] = []
    warnings: list[str] = []
    allowed_set = frozenset(allowed) if allowed else None
    with open(spool_path, "wb") as spool, ThreadPoolExecutor(workers) as pool, \
            tqdm(total=len(items), desc="convert", unit="img", disable=None, leave=False) as bar:
        results = pool.map(lambda it: load_item(it, mapping, allowed_set, min_blur), items)
        for loaded in results:
            bar.update(1)
            _check(loaded, strict)
            dropped += [{k: v for k, v in d.items() if k != "is_error"} for d in loaded.dropped]
            clipped += loaded.clipped
            warnings += loaded.warnings
            if loaded.skip is not None:
                _skip(loaded.skip, strict, skipped)
                continue
            sample = loaded.sample
            offsets.append((spool.tell(), len(sample.jpeg)))
            spool.write(sample.jpeg)
            sample.jpeg = b""  # kept on disk until written, so memory stays flat
            samples.append(sample)
    if not samples:
        reasons = Counter(s["reason"].split(" (")[0] for s in skipped).most_common(3)
        raise DataError(f"{source}: no usable image ({len(skipped)} skipped: "
                        f"{'; '.join(f'{n}x {r}' for r, n in reasons) or 'none found'}). See the reasons above.")

    names = allowed or class_order({n for s in samples for n in s.names})
    label_of = {name: i for i, name in enumerate(names, 1)}
    splits = _assign_splits(samples, fractions, seed)
    source_ids = _source_ids(samples)
    order = list(range(len(samples)))
    import random

    random.Random(seed).shuffle(order)  # records of a split are written in a seeded random order

    files: list[dict] = []
    counts: dict = {}
    with open(spool_path, "rb") as spool:
        for split in SPLITS:
            members = [i for i in order if splits[i] == split]
            if not members:
                continue
            size = sum(offsets[i][1] for i in members)
            shards = num_shards or max(1, math.ceil(size / SHARD_TARGET_BYTES))
            shards = min(shards, len(members))
            counts[split] = _count(samples[i] for i in members)
            files += _write_split(tmp, split, members, shards, samples, offsets, spool, source_ids, label_of)
    counts["total"] = _count(samples)
    write_label_map(tmp / "label_map.pbtxt", names)
    duplicates = _duplicates(samples)
    return Manifest(out="", classes=names, counts=counts, files=files, options=options, skipped=skipped,
                    dropped_boxes=dropped, clipped_boxes=clipped, duplicates=duplicates, warnings=warnings)


def _resolve_class_names(items: list[Item], mapping: dict[str, str], allowed, allow_new: bool) -> dict[str, str]:
    """``{name in the data: class name}`` through --map, --classes and the alias table (or a DataError)."""
    counts: Counter = Counter()
    examples: dict[str, str] = {}
    for item in items:
        for box in item.boxes:
            counts[box.name] += 1
            examples.setdefault(box.name, item.key)
    resolved = resolve_names(counts, mapping, allowed, allow_new=allow_new, examples=examples)
    for name, new in resolved.items():
        if name != new and name not in mapping:
            log.info("class %r read as %r (a known alias)", name, new)
    return resolved


def _skip(skip: Skip, strict: bool, skipped: list[dict]) -> None:
    if strict and skip.is_error:
        raise skip.error()
    log.debug("skipped %s: %s", skip.key, skip.reason)
    skipped.append({"item": skip.key, "reason": skip.reason})


def _check(loaded: Loaded, strict: bool) -> None:
    if not strict:
        return
    for d in loaded.dropped:
        if d["is_error"]:
            raise DataError(f"{d['item']}: {d['box']}: {d['reason']}. Fix the annotation, or run without --strict "
                            f"to skip such boxes (they are listed in manifest.json).")
    for c in loaded.clipped:
        if c["outside_px"] > OUTSIDE_TOLERANCE_PX:
            raise DataError(f"{c['item']}: {c['box']} lies {c['outside_px']:g} px outside the image. Fix the "
                            f"annotation (or the image size), or run without --strict to clip it.")


def _assign_splits(samples: list[Sample], fractions, seed: int) -> list[str]:
    if fractions == "keep":
        missing = [s.key for s in samples if s.split is None]
        if missing:
            raise ConfigError(f"split 'keep': {missing[0]} (and {len(missing) - 1} more) has no split in its folder "
                              f"or file name (train/valid/test). Give fractions such as 0.8,0.1,0.1 instead.")
        return [s.split for s in samples]  # type: ignore[misc]
    return stratified_split([set(s.names) for s in samples], [s.sha256 for s in samples], fractions, seed)


def _source_ids(samples: list[Sample]) -> list[str]:
    """``image/source_id``: the file name, made unique with ``-2``, ``-3`` ... (COCO evaluation needs unique ids)."""
    seen: Counter = Counter()
    ids = []
    for sample in samples:
        seen[sample.filename] += 1
        ids.append(sample.filename if seen[sample.filename] == 1 else f"{sample.filename}-{seen[sample.filename]}")
    return ids


def _count(samples) -> dict:
    per_class: Counter = Counter()
    images = 0
    for s in samples:
        images += 1
        per_class.update(s.names)
    return {"images": images, "boxes": sum(per_class.values()), "classes": dict(sorted(per_class.items()))}


def _write_split(tmp: Path, split: str, members: list[int], shards: int, samples, offsets, spool, source_ids,
                 label_of) -> list[dict]:
    from maskdetect.data.tfrecord import build_example, write_shards

    def records():
        for i in members:
            start, length = offsets[i]
            spool.seek(start)
            sample = samples[i]
            sample.jpeg = spool.read(length)
            yield build_example(sample, source_ids[i], label_of)
            sample.jpeg = b""

    paths = write_shards(tmp, split, records(), len(members), shards)
    files = []
    for k, path in enumerate(paths):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        n = len(members[k::shards])
        files.append({"name": path.name, "split": split, "records": n, "sha256": digest,
                      "bytes": path.stat().st_size})
    return files


def _duplicates(samples: list[Sample]) -> list[list[str]]:
    by_hash: dict[str, list[str]] = {}
    for s in samples:
        by_hash.setdefault(s.sha256, []).append(s.key)
    return sorted(sorted(keys) for keys in by_hash.values() if len(keys) > 1)

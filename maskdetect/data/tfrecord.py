"""TFRecord files of OD API ``tf.train.Example``s: write ours, read anyone's.

Keys written (the OD API's standard names): ``image/encoded`` (JPEG), ``image/format`` (``jpeg``),
``image/height``, ``image/width``, ``image/filename``, ``image/source_id``, ``image/key/sha256``,
``image/object/bbox/{xmin,xmax,ymin,ymax}`` (normalised float), ``image/object/class/text`` and
``image/object/class/label`` (1-based label-map id). Examples are serialised deterministically (sorted keys).

Reading accepts records made by others (Roboflow exports, the OD API's ``generate_tfrecord.py`` scripts): missing
``image/format``/size/filename are tolerated, and classes may be given as text, as label ids (names then come from
a ``*.pbtxt`` label map beside the file), or both.
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path
from typing import Iterator, Sequence

from maskdetect.data.records import Item, RawBox, Sample, Skip, split_from_name
from maskdetect.errors import DataError
from maskdetect.labelmap import find_label_map, read_label_map

log = logging.getLogger(__name__)

TFRECORD_PATTERNS = ("*.tfrecord", "*.tfrecords", "*.record", "*.tfrecord-*", "*.record-*", "*-of-*")


def tfrecord_files(source: str | Path) -> list[Path]:
    """The TFRecord files at ``source`` (a file, or every matching file under a folder), sorted."""
    source = Path(source)
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise DataError(f"{source}: no such file or folder. Pass a .tfrecord file or a folder of them.")
    files = sorted({p for pattern in TFRECORD_PATTERNS for p in source.rglob(pattern)
                    if p.is_file() and not p.name.startswith(".")})
    if not files:
        raise DataError(f"{source}: no TFRecord files (*.tfrecord, *.record, *-of-*) found.")
    return files


def iter_records(path: Path) -> Iterator[bytes]:
    """Serialised records of one TFRecord file. Raises DataError on a truncated or corrupt file, after yielding
    every record before the damage."""
    import tensorflow as tf

    error = None
    count = 0
    try:
        for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
            count += 1
            yield record
    except (tf.errors.DataLossError, tf.errors.OutOfRangeError, tf.errors.InvalidArgumentError) as exc:
        error = exc.message.splitlines()[0] if exc.message else type(exc).__name__
    except tf.errors.OpError as exc:
        error = exc.message.splitlines()[0] if exc.message else type(exc).__name__
    if error is not None:
        raise DataError(f"{path}: truncated or corrupt TFRecord after {count} good records ({error}). "
                        f"Re-create or re-download the file.")


def parse_example(serialized: bytes) -> dict:
    """The fields of one OD API example as plain Python values (missing ones empty/None).

    Raises:
        ValueError: not a tf.train.Example.
    """
    from google.protobuf.message import DecodeError
    import tensorflow as tf

    try:
        example = tf.train.Example.FromString(serialized)
    except (DecodeError, RuntimeError, TypeError) as exc:
        raise ValueError(f"not a tf.train.Example ({exc})") from None
    feature = example.features.feature

    def values(key: str, kind: str) -> list:
        if key not in feature:
            return []
        return list(getattr(feature[key], kind).value)

    def first(key: str, kind: str):
        got = values(key, kind)
        return got[0] if got else None

    return {
        "encoded": first("image/encoded", "bytes_list"),
        "format": (first("image/format", "bytes_list") or b"").decode("utf-8", "replace") or None,
        "filename": (first("image/filename", "bytes_list") or b"").decode("utf-8", "replace") or None,
        "source_id": (first("image/source_id", "bytes_list") or b"").decode("utf-8", "replace") or None,
        "width": first("image/width", "int64_list"),
        "height": first("image/height", "int64_list"),
        "xmin": values("image/object/bbox/xmin", "float_list"),
        "xmax": values("image/object/bbox/xmax", "float_list"),
        "ymin": values("image/object/bbox/ymin", "float_list"),
        "ymax": values("image/object/bbox/ymax", "float_list"),
        "text": [t.decode("utf-8", "replace") for t in values("image/object/class/text", "bytes_list")],
        "label": values("image/object/class/label", "int64_list"),
        "keys": sorted(feature.keys()),
    }


def object_names(fields: dict, label_names: Sequence[str] | None) -> list[str]:
    """Class name of each box: ``class/text`` if present, else ``class/label`` looked up in the label map.

    Raises:
        ValueError: neither gives one name per box.
    """
    n = len(fields["xmin"])
    if len(fields["text"]) == n and (n == 0 or all(fields["text"])):
        return list(fields["text"])
    if len(fields["label"]) == n:
        if label_names is None:
            raise ValueError("boxes have label ids but no class text, and no *.pbtxt label map was found beside "
                             "the file")
        bad = [i for i in fields["label"] if not 1 <= i <= len(label_names)]
        if bad:
            raise ValueError(f"label ids {sorted(set(bad))} are not in the label map (1..{len(label_names)})")
        return [label_names[i - 1] for i in fields["label"]]
    raise ValueError(f"{n} boxes but {len(fields['text'])} class texts and {len(fields['label'])} labels")


def read_tfrecord_items(source: Path) -> Iterator[Item | Skip]:
    """Items of every TFRecord file at ``source`` (reader for ``convert(format="tfrecord")``)."""
    for path in tfrecord_files(source):
        label_map = find_label_map(path)
        label_names = read_label_map(label_map) if label_map else None
        split = split_from_name(path)
        index = -1
        try:
            for index, record in enumerate(iter_records(path)):
                yield _item_from_record(path, index, record, label_names, split)
        except DataError as exc:
            yield Skip(str(path), str(exc).removeprefix(f"{path}: ").split(". Re-")[0],
                       "Re-create or re-download the file.")


def _item_from_record(path: Path, index: int, record: bytes, label_names, split) -> Item | Skip:
    key = f"{path}#{index}"
    try:
        fields = parse_example(record)
    except ValueError as exc:
        return Skip(key, str(exc), "Re-create the record.")
    if not fields["encoded"]:
        return Skip(key, "record has no image/encoded bytes", "Re-create the record.")
    n = len(fields["xmin"])
    if not (len(fields["xmax"]) == len(fields["ymin"]) == len(fields["ymax"]) == n):
        return Skip(key, "image/object/bbox/* lists differ in length", "Re-create the record.")
    try:
        names = object_names(fields, label_names)
    except ValueError as exc:
        return Skip(key, str(exc), "Put the label map (*.pbtxt) beside the TFRecord file.")
    filename = Path(fields["filename"] or "").name or f"{path.stem}-{index:06d}.jpg"
    declared = (fields["width"], fields["height"]) if fields["width"] and fields["height"] else None
    boxes = [RawBox(name, (x1, y1, x2, y2), normalised=True)
             for name, x1, y1, x2, y2 in zip(names, fields["xmin"], fields["ymin"], fields["xmax"], fields["ymax"])]
    return Item(key=key, filename=filename, image=fields["encoded"], boxes=boxes, declared_wh=declared, split=split)


def build_example(sample: Sample, source_id: str, label_of: dict[str, int]) -> bytes:
    """The serialised tf.train.Example of ``sample`` (deterministic bytes)."""
    import tensorflow as tf

    def b(values):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))

    def f(values):
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))

    def i(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    w, h = sample.width, sample.height
    feature = {
        "image/height": i([h]),
        "image/width": i([w]),
        "image/filename": b([sample.filename.encode()]),
        "image/source_id": b([source_id.encode()]),
        "image/key/sha256": b([hashlib.sha256(sample.jpeg).hexdigest().encode()]),
        "image/encoded": b([sample.jpeg]),
        "image/format": b([b"jpeg"]),
        "image/object/bbox/xmin": f([x1 / w for x1, _, _, _ in sample.xyxy]),
        "image/object/bbox/xmax": f([x2 / w for _, _, x2, _ in sample.xyxy]),
        "image/object/bbox/ymin": f([y1 / h for _, y1, _, _ in sample.xyxy]),
        "image/object/bbox/ymax": f([y2 / h for _, _, _, y2 in sample.xyxy]),
        "image/object/class/text": b([n.encode() for n in sample.names]),
        "image/object/class/label": i([label_of[n] for n in sample.names]),
    }
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    return example.SerializeToString(deterministic=True)


def shard_names(split: str, num_shards: int) -> list[str]:
    return [f"{split}-{k:05d}-of-{num_shards:05d}.tfrecord" for k in range(num_shards)]


def write_shards(folder: Path, split: str, records: Sequence[bytes] | Iterator[bytes], count: int,
                 num_shards: int) -> list[Path]:
    """Write ``count`` serialised records round-robin into ``num_shards`` files ``split-0000k-of-0000n``."""
    import tensorflow as tf

    paths = [folder / name for name in shard_names(split, num_shards)]
    writers = [tf.io.TFRecordWriter(str(p)) for p in paths]
    try:
        for k, record in enumerate(records):
            writers[k % num_shards].write(record)
    finally:
        for writer in writers:
            writer.close()
    return paths


SHARD_RE = re.compile(r"^(train|val|test)-\d{5}-of-\d{5}\.tfrecord$")

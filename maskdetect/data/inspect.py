"""``inspect``: validate OD API TFRecords (ours or anyone's) and summarise them in ``report.json`` and PNGs.

Example:
    >>> from maskdetect.data import inspect
    >>> report = inspect("workspace/data", out="workspace/data/inspect")  # doctest: +SKIP
    >>> report["splits"]["train"]["classes"]  # doctest: +SKIP
    {'mask_weared_incorrect': 18, 'with_mask': 239, 'without_mask': 47}
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections import Counter
from pathlib import Path

import numpy as np

from maskdetect.data.images import decode_image, laplacian_variance
from maskdetect.data.records import split_from_name
from maskdetect.data.tfrecord import iter_records, object_names, parse_example, tfrecord_files
from maskdetect.errors import DataError
from maskdetect.fileio import atomic_write_json
from maskdetect.guard import check_paths, check_replaceable, owned_dir
from maskdetect.labelmap import find_label_map, read_label_map

log = logging.getLogger(__name__)

SIZE_BINS_PX = (0, 4, 8, 16, 32, 64, 128, 256, math.inf)  # of sqrt(box area) in pixels
OPTIONAL_KEYS = ("image/format", "image/height", "image/width", "image/filename", "image/source_id",
                 "image/object/class/text", "image/object/class/label")
MOST_BLURRED = 20
COMMAND = "data inspect"


def inspect(path: str | Path, out: str | Path | None = None, *, max_samples: int = 16) -> dict:
    """Check every record of the TFRecord file or folder at ``path``; return the report (and write it to ``out``).

    The report has counts per split (from file names: ``train``/``val``/``valid``/``test``) and class, box sizes,
    byte-identical duplicates, blur scores of the faces (variance of the Laplacian of each crop), notes about
    missing optional keys and a list of problems (records that a trainer would choke on). With ``out``, writes
    ``report.json``, ``class_histogram.png``, ``box_sizes.png`` and ``samples.png`` there.

    Raises:
        DataError: ``path`` holds no TFRecord file.
        OutputError: ``out`` is or holds ``path``, lies inside it, or is a folder ``inspect`` did not make.
    """
    if out is not None:
        check_paths({"path": path}, {"--out": out}, folders=("--out",))
        check_replaceable(out, COMMAND)
    files = tfrecord_files(path)
    stats = _Stats(max_samples)
    for file in files:
        split = split_from_name(file) or "unsplit"
        label_map = find_label_map(file)
        label_names = read_label_map(label_map) if label_map else None
        count = 0
        try:
            for index, record in enumerate(iter_records(file)):
                count += 1
                stats.add(f"{file}#{index}", split, record, label_names)
        except DataError as exc:
            stats.problems.append({"record": str(file), "problem": str(exc)})
        stats.files.append({"file": str(file), "split": split, "records": count,
                            "label_map": label_names})
    report = stats.report(str(path))
    if out is not None:
        with owned_dir(out, COMMAND) as tmp:
            atomic_write_json(tmp / "report.json", report)
            _plots(tmp, report, stats.samples)
        report["out"] = str(out)
    return report


class _Stats:
    def __init__(self, max_samples: int):
        self.max_samples = max_samples
        self.files: list[dict] = []
        self.problems: list[dict] = []
        self.notes: Counter = Counter()
        self.records = 0
        self.valid = 0
        self.splits: dict[str, dict] = {}
        self.sizes_px: list[float] = []
        self.size_by_class: dict[str, list[float]] = {}
        self.blur: list[tuple[float, str, str]] = []
        self.by_hash: dict[str, list[str]] = {}
        self.samples: list[tuple[np.ndarray, list, list[str]]] = []

    def add(self, key: str, split: str, record: bytes, label_names) -> None:
        self.records += 1
        try:
            fields = parse_example(record)
        except ValueError as exc:
            return self._problem(key, str(exc))
        for k in OPTIONAL_KEYS:
            if k not in fields["keys"]:
                self.notes[f"missing {k}"] += 1
        if not fields["encoded"]:
            return self._problem(key, "no image/encoded bytes")
        try:
            jpeg, width, height, _, gray = decode_image(fields["encoded"])
        except ValueError as exc:
            return self._problem(key, f"image does not decode ({exc})")
        if fields["width"] and fields["height"] and (fields["width"], fields["height"]) != (width, height):
            return self._problem(key, f"image/width,height say {fields['width']}x{fields['height']}, image is "
                                      f"{width}x{height}")
        n = len(fields["xmin"])
        if not (len(fields["xmax"]) == len(fields["ymin"]) == len(fields["ymax"]) == n):
            return self._problem(key, "image/object/bbox/* lists differ in length")
        try:
            names = object_names(fields, label_names)
        except ValueError as exc:
            return self._problem(key, str(exc))
        boxes = list(zip(fields["xmin"], fields["ymin"], fields["xmax"], fields["ymax"]))
        bad = [i for i, (x1, y1, x2, y2) in enumerate(boxes)
               if not (0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1)]
        if bad:
            x1, y1, x2, y2 = boxes[bad[0]]
            return self._problem(key, f"{len(bad)} boxes outside [0, 1] or empty, e.g. box {bad[0]} "
                                      f"[{x1:.4g}, {y1:.4g}, {x2:.4g}, {y2:.4g}]")
        self.valid += 1
        digest = hashlib.sha256(fields["encoded"]).hexdigest()
        self.by_hash.setdefault(digest, []).append(key)
        entry = self.splits.setdefault(split, {"images": 0, "boxes": 0, "classes": Counter()})
        entry["images"] += 1
        entry["boxes"] += n
        entry["classes"].update(names)
        px_boxes = [(x1 * width, y1 * height, x2 * width, y2 * height) for x1, y1, x2, y2 in boxes]
        for i, (name, (x1, y1, x2, y2)) in enumerate(zip(names, px_boxes)):
            size = math.sqrt(max(x2 - x1, 0) * max(y2 - y1, 0))
            self.sizes_px.append(size)
            self.size_by_class.setdefault(name, []).append(size)
            self.blur.append((laplacian_variance(gray, (x1, y1, x2, y2)), key, f"box {i} {name}"))
        if len(self.samples) < self.max_samples:
            self.samples.append((np.asarray(_rgb(jpeg)), px_boxes, names))

    def _problem(self, key: str, problem: str) -> None:
        self.problems.append({"record": key, "problem": problem})

    def report(self, path: str) -> dict:
        classes: Counter = Counter()
        splits = {}
        for split, entry in sorted(self.splits.items()):
            classes.update(entry["classes"])
            splits[split] = {"images": entry["images"], "boxes": entry["boxes"],
                             "classes": dict(sorted(entry["classes"].items()))}
        blur_scores = np.array([b[0] for b in self.blur]) if self.blur else np.zeros(0)
        return {
            "path": path,
            "files": self.files,
            "records": self.records,
            "valid_records": self.valid,
            "splits": splits,
            "classes": dict(sorted(classes.items())),
            "box_size_px": _distribution(self.sizes_px) | {
                "histogram_sqrt_area": _histogram(self.sizes_px),
                "by_class": {c: _distribution(v) for c, v in sorted(self.size_by_class.items())}},
            "duplicates": sorted(sorted(keys) for keys in self.by_hash.values() if len(keys) > 1),
            "blur": _distribution(blur_scores.tolist()) | {
                "most_blurred": [{"record": k, "box": b, "laplacian_variance": round(s, 2)}
                                 for s, k, b in sorted(self.blur)[:MOST_BLURRED]]},
            "notes": dict(sorted(self.notes.items())),
            "problems": self.problems,
        }


def _rgb(jpeg: bytes):
    import io

    from PIL import Image

    with Image.open(io.BytesIO(jpeg)) as im:
        return im.convert("RGB")


def _distribution(values: list[float]) -> dict:
    if not values:
        return {"count": 0}
    arr = np.asarray(values, dtype=np.float64)
    q = np.percentile(arr, [0, 5, 25, 50, 75, 95, 100])
    return {"count": int(arr.size), "min": round(float(q[0]), 2), "p5": round(float(q[1]), 2),
            "p25": round(float(q[2]), 2), "median": round(float(q[3]), 2), "p75": round(float(q[4]), 2),
            "p95": round(float(q[5]), 2), "max": round(float(q[6]), 2)}


def _histogram(values: list[float]) -> dict:
    counts = Counter()
    for v in values:
        for lo, hi in zip(SIZE_BINS_PX, SIZE_BINS_PX[1:]):
            if lo <= v < hi:
                counts[f"{lo}-{hi if hi != math.inf else 'inf'}"] += 1
                break
    return {f"{lo}-{hi if hi != math.inf else 'inf'}": counts[f"{lo}-{hi if hi != math.inf else 'inf'}"]
            for lo, hi in zip(SIZE_BINS_PX, SIZE_BINS_PX[1:])}


# --------------------------------------------------------------------------- plots
COLORS = {"with_mask": "tab:green", "without_mask": "tab:red", "mask_weared_incorrect": "tab:orange"}


def _plots(folder: Path, report: dict, samples) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = list(report["classes"])
    splits = list(report["splits"])
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / max(len(splits), 1)
    for k, split in enumerate(splits):
        values = [report["splits"][split]["classes"].get(c, 0) for c in classes]
        bars = ax.bar([i + k * width for i in range(len(classes))], values, width, label=split)
        ax.bar_label(bars, fontsize=7)
    ax.set_xticks([i + width * (len(splits) - 1) / 2 for i in range(len(classes))], classes)
    ax.set_ylabel("boxes")
    ax.set_title("boxes per class and split")
    ax.legend()
    fig.tight_layout()
    fig.savefig(folder / "class_histogram.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    hist = report["box_size_px"].get("histogram_sqrt_area", {})
    bars = ax.bar(list(hist), list(hist.values()), color="tab:blue")
    ax.bar_label(bars, fontsize=7)
    ax.set_xlabel("box size: sqrt(width x height) in pixels")
    ax.set_ylabel("boxes")
    ax.set_title("box sizes")
    fig.tight_layout()
    fig.savefig(folder / "box_sizes.png", dpi=100)
    plt.close(fig)

    cols = 4
    rows = max(1, math.ceil(len(samples) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 3, rows * 3), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (image, boxes, names) in zip(axes.flat, samples):
        ax.imshow(image)
        for (x1, y1, x2, y2), name in zip(boxes, names):
            ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=1,
                                       edgecolor=COLORS.get(name, "tab:blue")))
    handles = [plt.Rectangle((0, 0), 1, 1, fill=False, edgecolor=c) for c in COLORS.values()]
    fig.legend(handles, list(COLORS), loc="lower center", ncol=3, fontsize=8)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(folder / "samples.png", dpi=80)
    plt.close(fig)

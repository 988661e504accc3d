"""Benchmark `maskdetect data convert`: images/s with 1 worker vs all cores (median of a few runs), as JSON.

Usage: python bench/bench_convert.py [--source DIR] [--format voc] [--runs 3]
Default source: ../shared/datasets/face-mask-kaggle if present, else the bundled sample/face-mask.
TensorFlow is imported and warmed up first, so the figures are for the conversion itself.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    import maskdetect  # noqa: F401  (before TensorFlow: installs the OD API compatibility layer)
    from maskdetect.data import convert

    kaggle = REPO.parent / "shared" / "datasets" / "face-mask-kaggle"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=kaggle if kaggle.is_dir() else REPO / "sample" / "face-mask")
    parser.add_argument("--format", default="voc")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--blur-threshold", type=float, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import tensorflow as tf

    tf.train.Example()  # import cost is not part of the figure
    cores = os.cpu_count() or 1
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        convert(args.format, args.source, Path(tmp) / "warmup", workers=cores)  # file cache warm for both
        for workers in sorted({1, cores}):
            seconds, manifest = [], None
            for run in range(args.runs):
                start = time.perf_counter()
                manifest = convert(args.format, args.source, Path(tmp) / f"w{workers}-{run}", workers=workers,
                                   min_blur=args.blur_threshold)
                seconds.append(time.perf_counter() - start)
            images = manifest.counts["total"]["images"]
            results[f"workers_{workers}"] = {
                "workers": workers, "images": images, "seconds_median": round(statistics.median(seconds), 3),
                "images_per_s": round(images / statistics.median(seconds), 1),
                "runs_s": [round(s, 3) for s in seconds]}
    summary = {
        "source": str(args.source), "format": args.format, "cores": cores, "runs": args.runs,
        "records": manifest.counts, "skipped": len(manifest.skipped), "dropped_boxes": len(manifest.dropped_boxes),
        "clipped_boxes": len(manifest.clipped_boxes), "duplicate_groups": len(manifest.duplicates), **results,
        "speedup": round(results[f"workers_{cores}"]["images_per_s"] / results["workers_1"]["images_per_s"], 2),
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The second stage's cost per frame by number of faces: ``FaceClassifier.probabilities`` (crop + classify) on a
1280x720 frame (the first frame of ../shared/videos/one-unmasked-1280x720.mp4) with 1, 5 and 20 face boxes, for
each classifier given (default: the bundled model's; e.g. one member and an ensemble), interleaved call by call so that all see the same machine
load; median and p90 ms of ``--calls``. Prints one JSON object.

Usage:
    python bench/bench_classifier.py [CLASSIFIER.tflite ...] [--calls 100] [--faces 1,5,20]
        [--threads 2] [--out bench.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from bench_latency import REPO, frames_720p


def face_boxes(count: int, width: int = 1280, height: int = 720, side: int = 60) -> np.ndarray:
    """`count` square boxes of `side` px spread over the frame (a grid), as a crowd's faces."""
    columns = int(np.ceil(np.sqrt(count)))
    rows = int(np.ceil(count / columns))
    xs = np.linspace(side, width - 2 * side, columns)
    ys = np.linspace(side, height - 2 * side, rows)
    corners = np.array([(x, y) for y in ys for x in xs][:count], np.float32)
    return np.concatenate([corners, corners + side], axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("classifiers", type=Path, nargs="*",
                        default=[REPO / "maskdetect" / "models" / "default" / "classifier.tflite"])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--faces", default="1,5,20")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()

    from maskdetect.infer.classify import FaceClassifier

    frame = frames_720p(1)[0]
    classifiers = [FaceClassifier(path, num_threads=args.threads) for path in args.classifiers]
    counts = [int(c) for c in args.faces.split(",")]
    times = {(i, n): [] for i in range(len(classifiers)) for n in counts}
    for call in range(args.calls + args.warmup):
        for n in counts:
            boxes = face_boxes(n)
            for i, classifier in enumerate(classifiers):
                started = time.perf_counter()
                classifier.probabilities(frame, boxes)
                if call >= args.warmup:
                    times[i, n].append((time.perf_counter() - started) * 1e3)
    rows = []
    for i, (path, classifier) in enumerate(zip(args.classifiers, classifiers)):
        spec = json.loads(path.with_suffix(".json").read_text())
        rows.append({"classifier": str(path), "members": spec.get("members", 1),
                     "size_mb": round(path.stat().st_size / 1e6, 2),
                     "ms_by_faces": {n: {"median": round(float(np.median(times[i, n])), 2),
                                         "p90": round(float(np.percentile(times[i, n], 90)), 2)} for n in counts}})
    result = {"frame": "1280x720", "threads": args.threads, "calls": args.calls,
              "load_at_start": os.getloadavg()[0], "classifiers": rows}
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

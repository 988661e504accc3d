"""A SavedModel given the frame already shrunk by its own resizer vs the full frame (issue 12, item 4).

Loads one SavedModel export twice — as ``Predictor`` does (the frame shrunk in OpenCV to the model's input before
TensorFlow sees it) and with that step off (TensorFlow gets the full frame and resizes it in the graph) — and times
``Predictor.predict`` on the same frames of ../shared/videos/one-unmasked-1280x720.mp4 at 1280x720 and scaled to
1920x1080, interleaved frame by frame; prints medians, p90 and the ratio as JSON, and the largest box difference.

Usage:
    python bench/bench_saved_model_resize.py EXPORT_DIR_OR_SAVED_MODEL [--frames 60] [--warmup 5]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()

    import cv2

    import maskdetect  # noqa: F401  (the OD API compatibility layer goes first)
    from maskdetect.infer.predictor import Predictor
    from bench_latency import frames_720p

    frames = frames_720p(args.frames + args.warmup)
    pre = Predictor(args.model, threshold=0.5, classifier=None)
    full = Predictor(args.model, threshold=0.5, classifier=None)
    assert pre._resize is not None, f"{args.model}: no pipeline.config beside it to read the resizer from"
    full._resize = None  # what Predictor did before: the whole frame into TensorFlow
    result = {"model": str(args.model), "cpu_count": os.cpu_count(), "load_at_start": os.getloadavg()[0]}
    for name, size in (("1280x720", None), ("1920x1080", (1920, 1080))):
        times: dict[str, list[float]] = {"pre_resized": [], "full_frame": []}
        worst = 0.0
        for index, frame in enumerate(frames):
            if size:
                frame = cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR)
            outputs = {}
            for key, predictor in (("pre_resized", pre), ("full_frame", full)):
                started = time.perf_counter()
                outputs[key] = predictor.predict(frame)
                if index >= args.warmup:
                    times[key].append((time.perf_counter() - started) * 1e3)
            a, b = outputs["pre_resized"], outputs["full_frame"]
            if len(a) == len(b) and len(a):
                worst = max(worst, float(np.abs(np.sort(a.xyxy, 0) - np.sort(b.xyxy, 0)).max()))
        medians = {k: round(float(np.median(v)), 1) for k, v in times.items()}
        result[name] = {"median_ms": medians, "p90_ms": {k: round(float(np.percentile(v, 90)), 1)
                                                         for k, v in times.items()},
                        "speedup": round(medians["full_frame"] / medians["pre_resized"], 2),
                        "largest_box_difference_px": round(worst, 2), "frames": len(times["pre_resized"])}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

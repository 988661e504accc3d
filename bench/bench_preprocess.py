"""The TFLite input's preparation per frame: ``tflite_input`` (resize, then a 256-entry table per channel) beside
the plain numpy arithmetic it replaced (``resized.astype(float32) * scale + offset``), interleaved call by call on
the same frames, for 720p and 1080p, square-stretched and letterboxed. Also checks both give the same tensor.

Usage:
    python bench/bench_preprocess.py [--calls 300] [--size 320]
"""

from __future__ import annotations

import argparse
import json
import time

import cv2
import numpy as np

from maskdetect.infer.predictor import tflite_input


def numpy_input(image: np.ndarray, size: int, scale: np.ndarray, offset: np.ndarray, letterbox: bool) -> np.ndarray:
    """The arithmetic `tflite_input` did before its table (the same resize)."""
    height, width = image.shape[:2]
    if letterbox:
        ratio = size / max(width, height)
        new_wh = (max(1, min(size, round(width * ratio))), max(1, min(size, round(height * ratio))))
        resized = cv2.resize(image, new_wh, interpolation=cv2.INTER_LINEAR)
        blob = np.zeros((1, size, size, 3), np.float32)
        blob[0, :new_wh[1], :new_wh[0]] = resized.astype(np.float32) * scale + offset
        return blob
    return (cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR).astype(np.float32) * scale + offset)[None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--size", type=int, default=320)
    args = parser.parse_args()
    scale, offset = np.full(3, 2 / 255, np.float32), np.full(3, -1.0, np.float32)  # MobileNet's [-1, 1]
    rng = np.random.default_rng(0)
    rows = []
    for height, width in ((720, 1280), (1080, 1920)):
        frame = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        for letterbox in (False, True):
            assert np.array_equal(tflite_input(frame, args.size, scale, offset, letterbox)[0],
                                  numpy_input(frame, args.size, scale, offset, letterbox))
            times = {"table": [], "numpy": []}
            for _ in range(args.calls):
                for name, prepare in (("table", lambda: tflite_input(frame, args.size, scale, offset, letterbox)),
                                      ("numpy", lambda: numpy_input(frame, args.size, scale, offset, letterbox))):
                    started = time.perf_counter()
                    prepare()
                    times[name].append((time.perf_counter() - started) * 1e3)
            medians = {name: float(np.median(t)) for name, t in times.items()}
            rows.append({"frame": f"{width}x{height}", "letterbox": letterbox, "input": args.size,
                         "table_median_ms": round(medians["table"], 3), "numpy_median_ms": round(medians["numpy"], 3),
                         "speedup": round(medians["numpy"] / medians["table"], 1)})
    print(json.dumps({"calls": args.calls, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()

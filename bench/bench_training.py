"""Training speed (s/step) at input 256 and 512, export time, and SavedModel vs TFLite latency per image.

Trains SSD EfficientDet-D0 from scratch on the bundled sample (batch 2) for a few steps per size, timing the
steps after the first compiled call (tracing excluded, reported apart); exports the 256 run as SavedModel and
TFLite and times both on the sample images. Prints one JSON object.

Usage: ``python bench/bench_training.py [--steps 20] [--sizes 256 512] [--images 20]``

Other models and batches, training speed only (no export)::

    python bench/bench_training.py --model ssd_mobilenet_v2_fpnlite_320 --sizes 320 --batch-size 4 --no-export
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import maskdetect  # noqa: F401  (compat layer first)

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20, help="timed steps per size (after the first call)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--images", type=int, default=20, help="images for the latency comparison")
    parser.add_argument("--model", default="ssd_efficientdet_d0_512", help="a model of `maskdetect configure`")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--no-export", action="store_true", help="time training only")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import numpy as np
    import tensorflow as tf

    from maskdetect.data import convert
    from maskdetect.train.export import export_saved_model, export_tflite
    from maskdetect.train.pipeline import configure
    from maskdetect.infer.predictor import Predictor
    from maskdetect.infer.sources import read_image
    from maskdetect.train.train import train

    tf.get_logger().setLevel(logging.ERROR)
    result: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                "tensorflow": tf.__version__, "load_avg_start": os.getloadavg()[0]}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "data"
        convert("voc", REPO / "sample" / "face-mask", data, split=(0.8, 0.2, 0.0), seed=0)
        runs = {}
        for size in args.sizes:
            chunk = 5
            paths = configure(data, tmp / f"run{size}", model=args.model, image_size=size,
                              batch_size=args.batch_size, num_steps=chunk + args.steps, learning_rate=0.01)
            started = time.monotonic()
            train(paths.run_dir, steps_per_iteration=chunk, progress=False)
            total = time.monotonic() - started
            log = [json.loads(line) for line in paths.train_log.read_text().splitlines()]
            per_step = [1 / entry["steps_per_sec"] for entry in log[1:]]  # the first call includes tracing
            result[f"train_{size}"] = {"model": args.model, "batch": args.batch_size,
                                       "s_per_step": round(statistics.median(per_step), 3),
                                       "first_call_s_incl_tracing": round(chunk / log[0]["steps_per_sec"], 1),
                                       "timed_steps": args.steps, "total_s": round(total, 1)}
            runs[size] = paths
        if args.no_export:
            print(json.dumps(result, indent=2))
            return
        size = min(runs)
        started = time.monotonic()
        saved_model = export_saved_model(runs[size].run_dir)
        result["export_saved_model_s"] = round(time.monotonic() - started, 1)
        started = time.monotonic()
        tflite = export_tflite(runs[size].run_dir)
        result["export_tflite_s"] = round(time.monotonic() - started, 1)
        result["tflite_mb"] = round(tflite.stat().st_size / 1e6, 1)
        images = [read_image(p) for p in sorted((REPO / "sample" / "face-mask" / "images").glob("*.jpg"))][:args.images]
        for name, path in (("saved_model", saved_model), ("tflite", tflite)):
            started = time.monotonic()
            predictor = Predictor(path, threshold=0.3)
            load = time.monotonic() - started
            times = []
            for image in images:
                tick = time.perf_counter()
                predictor.predict(image)
                times.append((time.perf_counter() - tick) * 1e3)
            result[f"latency_{name}_{size}"] = {"load_s": round(load, 1), "median_ms": round(statistics.median(times), 1),
                                                "p90_ms": round(float(np.percentile(times, 90)), 1),
                                                "images": len(times)}
        result["tflite_vs_saved_model_speedup"] = round(
            result[f"latency_saved_model_{size}"]["median_ms"] / result[f"latency_tflite_{size}"]["median_ms"], 2)
    result["machine"]["load_avg_end"] = os.getloadavg()[0]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

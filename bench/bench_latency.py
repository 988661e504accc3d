"""Latency per 1280x720 frame by backend and precision, beside each export's validation accuracy and size.

For every export of each RUN_DIR (``export/saved_model``, ``model.tflite``, ``model-fp16.tflite``,
``model-int8.tflite``, ``model.onnx`` on ONNX Runtime, whichever exist; the TFLite ones on LiteRT and on tf.lite,
and on the first runtime also with the second stage when ``export/classifier.tflite`` exists: the clip has one
face, so that row adds one crop's classification) measures ``Predictor.predict`` — preprocess + model + postprocess — on
the same 1280x720 frames (the first ``--frames`` of ../shared/videos/one-unmasked-1280x720.mp4), after
``--warmup`` frames, interleaved frame by frame across the exports so that all of them see the same machine
load (so exports of several runs, e.g. one run exported at two input sizes, compare side by side); reports
median and p90 ms. Accuracy comes from ``RUN_DIR/metrics-val-export*.json`` (run
``maskdetect evaluate RUN_DIR --export PATH`` first; missing figures are null). Prints one JSON object, then the
same table in Markdown.

Usage:
    python bench/bench_latency.py [RUN_DIR ...] [--frames 200] [--warmup 10] [--threads 2] [--runtimes litert,tf.lite]
        [--out bench.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO.parent / "shared" / "videos" / "one-unmasked-1280x720.mp4"


def exports_of(run_dir: Path, runtimes: list[str]) -> list[tuple[str, Path, Path, str, Path | None]]:
    """``(precision, model path, metrics file, TFLite runtime, classifier or None)`` for each export present
    (TFLite ones once per runtime, and with the classifier on the first runtime)."""
    export = run_dir / "export"
    classifier = export / "classifier.tflite"
    found = []
    if (export / "saved_model" / "saved_model.pb").is_file():
        found.append(("float32", export / "saved_model", run_dir / "metrics-val-export.json", "auto", None))
    for stem, label in (("model", "float32"), ("model-fp16", "fp16"), ("model-int8", "int8")):
        if (export / f"{stem}.tflite").is_file():
            for runtime in runtimes:
                found.append((label, export / f"{stem}.tflite", run_dir / f"metrics-val-export-{stem}.json",
                              runtime, None))
            if classifier.is_file():
                found.append((label, export / f"{stem}.tflite",
                              run_dir / f"metrics-val-export-{stem}-classifier.json", runtimes[0], classifier))
    if (export / "model.onnx").is_file():  # the TFLite runtime does not apply: ONNX Runtime on the CPU
        found.append(("float32", export / "model.onnx", run_dir / "metrics-val-export-model-onnx.json", "auto", None))
    return found


def frames_720p(count: int) -> list[np.ndarray]:
    from maskdetect.infer.sources import open_source

    if not CLIP.is_file():
        sys.exit(f"{CLIP}: the benchmark clip is missing (../shared/videos)")
    source = open_source(CLIP, max_frames=count)
    try:
        frames = [frame.image for frame in source]
    finally:
        source.close()
    assert frames and frames[0].shape[:2] == (720, 1280), frames[0].shape if frames else None
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", type=Path, nargs="*", default=[REPO / "workspace" / "runs" / "demo"],
                        help="default workspace/runs/demo (what `maskdetect demo` makes)")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="TFLite, ONNX Runtime threads (default: all)")
    parser.add_argument("--runtimes", default="litert,tf.lite", help="TFLite runtimes to compare (default both)")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()

    import maskdetect  # noqa: F401  (the OD API compatibility layer goes first)
    from maskdetect.infer.predictor import Predictor
    from maskdetect.logs import configure

    configure()
    exports = [found for run_dir in args.run_dirs for found in exports_of(run_dir, args.runtimes.split(","))]
    if not exports:
        sys.exit(f"{' '.join(map(str, args.run_dirs))}: no export (run `maskdetect export` first)")
    frames = frames_720p(args.frames + args.warmup)
    predictors = [Predictor(path, threshold=0.5, num_threads=args.threads, tflite_runtime=runtime,
                            classifier=classifier) for _, path, _, runtime, classifier in exports]
    times: list[list[float]] = [[] for _ in exports]
    for index, frame in enumerate(frames):
        for predictor, spent in zip(predictors, times):
            started = time.perf_counter()
            predictor.predict(frame)
            if index >= args.warmup:
                spent.append((time.perf_counter() - started) * 1e3)
    rows = []
    for (precision, path, metrics_path, _, classifier), predictor, spent in zip(exports, predictors, times):
        runtime = {"litert": "LiteRT", "tensorflow": "SavedModel"}.get(predictor.runtime, predictor.runtime)
        pixels = f" {predictor.input_size} px" if predictor.input_size else ""
        label = f"{runtime} {precision}{pixels}" + (" + classifier" if classifier else "")
        metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size
        rows.append({"export": label, "path": str(path), "median_ms": round(float(np.median(spent)), 1),
                     "p90_ms": round(float(np.percentile(spent, 90)), 1), "frames": len(spent),
                     "val_mAP@0.5": metrics.get("mAP@0.5"), "val_AP@0.5": metrics.get("AP@0.5"),
                     "size_mb": round(size / 1e6, 1)})
    result = {"frame": "1280x720", "threads": args.threads, "cpu_count": os.cpu_count(),
              "load_at_start": os.getloadavg()[0], "exports": rows}
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    classes = list((rows[0]["val_AP@0.5"] or {}).keys())
    fmt = lambda v: "—" if v is None else f"{v:.3f}"  # noqa: E731
    print("\n| export | median ms | p90 ms | val mAP@0.5 | " + " | ".join(classes) + " | MB |")
    print("|---|---|---|---|" + "---|" * len(classes) + "---|")
    for row in rows:
        per_class = [fmt((row["val_AP@0.5"] or {}).get(c)) for c in classes]
        print(f"| {row['export']} | {row['median_ms']} | {row['p90_ms']} | {fmt(row['val_mAP@0.5'])} | "
              + " | ".join(per_class) + f" | {row['size_mb']} |")


if __name__ == "__main__":
    main()

"""Cross-camera batching: one LiteRT call on a batch of N frames against N calls of one frame each.

`watch` runs one model for all its cameras. The site issue asks to batch the cameras' frames through it where
that is faster. The TFLite exports cannot be asked: the OD API's TFLite export traces the network at batch 1
(its reshapes keep the 1) and ends in the ``TFLite_Detection_PostProcess`` op, which takes one image; this
bench first tries ``resize_tensor_input`` on RUN_DIR's ``export/model-int8.tflite`` and records the error.

So it measures the network itself: the run's newest checkpoint traced twice without the post-processing op
(the ONNX export's graph, :func:`maskdetect.train.export.raw_ssd_graph`), at batch 1 and at batch N, each
converted to TFLite (int8 calibrated on training images, as the export does, and float32), and run on LiteRT
with the same threads: per round, N single calls and one batched call on the same N real frames (the first
frames of ../shared/videos/one-unmasked-1280x720.mp4, preprocessed as the predictor does), interleaved so both
see the same machine load. It reports the median ms per round of each, their ratio, and the largest difference
between the two outputs (the same network: it should be rounding only). Prints JSON.

Usage:
    python bench/bench_batch_inference.py RUN_DIR [--batch 4] [--image-size 384] [--rounds 30] [--threads 2]
        [--precisions int8,none] [--calibration 50]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO.parent / "shared" / "videos" / "one-unmasked-1280x720.mp4"


def resize_error(tflite_path: Path, batch: int, threads: int) -> str | None:
    """The error LiteRT gives when the exported model's input is resized to `batch` (None: it worked)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tflite_path), num_threads=threads)
    (inp,) = interpreter.get_input_details()
    try:
        interpreter.resize_tensor_input(inp["index"], [batch, *inp["shape"][1:]])
        interpreter.allocate_tensors()
    except RuntimeError as exc:
        return str(exc).strip()
    return None


def convert(graph_def, outputs: list[str], quantize: str, representative) -> bytes:
    """The frozen graph as TFLite, at `quantize` (as the export sets it)."""
    import tensorflow as tf

    from maskdetect.train.export import set_precision

    def imports():
        tf.compat.v1.import_graph_def(graph_def, name="")

    wrapped = tf.compat.v1.wrap_function(imports, [])
    function = wrapped.prune(feeds=wrapped.graph.get_tensor_by_name("input:0"),
                             fetches=[wrapped.graph.get_tensor_by_name(name) for name in outputs])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], wrapped)
    set_precision(converter, quantize, representative)
    return converter.convert()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=384)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precisions", default="int8,none")
    parser.add_argument("--calibration", type=int, default=50)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from maskdetect.infer.predictor import tflite_input  # maskdetect first: it makes the OD API importable
    from maskdetect.infer.video import read_frames
    from maskdetect.train.export import calibration_images, input_spec, raw_ssd_graph, tflite_pipeline
    from maskdetect.train.pipeline import at_image_size
    from maskdetect.train.run import Run

    from ai_edge_litert.interpreter import Interpreter  # noqa: I001
    from object_detection.builders import model_builder

    run = Run.open(args.run_dir)
    report = {"run": str(args.run_dir), "batch": args.batch, "image_size": args.image_size,
              "threads": args.threads, "rounds": args.rounds, "load_before": os.getloadavg()[0]}
    exported = run.tflite_path("int8")
    if exported.is_file():
        report["exported_int8_resized"] = resize_error(exported, args.batch, args.threads) or "works"

    pipeline, _ = tflite_pipeline(at_image_size(run.pipeline, args.image_size))
    model = model_builder.build(model_config=pipeline.model, is_training=False)
    spec = input_spec(model, pipeline, False)
    scale, offset = np.asarray(spec.scale, np.float32), np.asarray(spec.offset, np.float32)

    def blob(image):
        return tflite_input(image, spec.size, scale, offset, spec.letterboxes(image.shape[1], image.shape[0]))[0]

    graphs = {b: raw_ssd_graph(model, pipeline, run.checkpoints, batch=b) for b in (1, args.batch)}
    calibration, _ = calibration_images(run, args.calibration, seed=0)
    frames = [blob(frame) for frame in read_frames(CLIP, max_frames=args.batch)]
    singles, batched = frames, np.concatenate(frames)

    for quantize in args.precisions.split(","):
        interpreters = {}
        for b, (graph_def, outputs) in graphs.items():
            def representative(b=b):
                for i in range(0, len(calibration) - b + 1, b):
                    yield [np.concatenate([blob(image) for image in calibration[i:i + b]])]

            started = time.monotonic()
            model_bytes = convert(graph_def, outputs, quantize, representative)
            with tempfile.NamedTemporaryFile(suffix=".tflite", delete=False) as tmp:
                tmp.write(model_bytes)
            interpreter = Interpreter(model_path=tmp.name, num_threads=args.threads)
            os.unlink(tmp.name)
            interpreter.allocate_tensors()
            interpreters[b] = interpreter
            print(f"{quantize} batch {b}: converted in {time.monotonic() - started:.0f} s", file=sys.stderr)

        def call(interpreter, x):
            interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
            interpreter.invoke()
            return [interpreter.get_tensor(o["index"]).copy() for o in interpreter.get_output_details()]

        one, many = interpreters[1], interpreters[args.batch]
        times = {"single_calls": [], "one_batched_call": []}
        for r in range(args.warmup + args.rounds):
            t0 = time.perf_counter()
            single_out = [call(one, x) for x in singles]
            t1 = time.perf_counter()
            batch_out = call(many, batched)
            t2 = time.perf_counter()
            if r >= args.warmup:
                times["single_calls"].append((t1 - t0) * 1e3)
                times["one_batched_call"].append((t2 - t1) * 1e3)
        # the two conversions are calibrated separately (int8), so the outputs agree to quantisation steps
        largest = max(float(np.abs(np.concatenate([s[k] for s in single_out]) - batch_out[k]).max())
                      for k in range(len(batch_out)) if batch_out[k].shape[0] == args.batch)
        single_ms, batch_ms = (statistics.median(times[k]) for k in ("single_calls", "one_batched_call"))
        report[quantize] = {"single_calls_ms": round(single_ms, 1), "one_batched_call_ms": round(batch_ms, 1),
                            "batched_over_single": round(batch_ms / single_ms, 3),
                            "per_frame_ms": {"single": round(single_ms / args.batch, 1),
                                             "batched": round(batch_ms / args.batch, 1)},
                            "largest_output_difference": round(largest, 4)}
    report["load_after"] = os.getloadavg()[0]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

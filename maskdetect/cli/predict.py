"""``maskdetect predict``: a thin face over :func:`maskdetect.infer.loop.predict_source`."""

from __future__ import annotations

import argparse
from pathlib import Path

from maskdetect.cli import options

DISPLAY_CHOICES = ("auto", "window", "notebook", "none")


def register(subparsers) -> None:
    from maskdetect.infer.predictor import DEFAULT_NMS_IOU, DEFAULT_THRESHOLD, TFLITE_RUNTIMES
    from maskdetect.infer.video import X264_PRESETS, Encoder

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
                   help="image, folder of images, glob of images ('photos/*.jpg', quoted), video file, webcam "
                        "index, or rtsp:// / http:// URL")
    p.add_argument("--out", metavar="PATH",
                   help="annotated image(s), video or recording; a video is H.264 in .mp4 (also .m4v, .mov, .mkv, "
                        ".avi); a path ending in / is a folder (created), where a video is written as <name>.mp4")
    p.add_argument("--json", type=Path, metavar="FILE",
                   help='write detections as [{"image"|"frame", "bbox_xyxy", "label", "score", ...}]')
    p.add_argument("--classifier", default="auto", metavar="PATH",
                   help="second stage re-classifying each face from a full-resolution crop: auto (default: the "
                        "classifier.tflite beside the model, if any; the bundled model has one), a path, or none")
    p.add_argument("--threshold", type=options.fraction(), metavar="T",
                   help="minimum score (default: the model's operating "
                   f"point from its card, set by `evaluate --export`; else {DEFAULT_THRESHOLD})")
    p.add_argument("--class-threshold", type=options.class_threshold, action="append", default=[], metavar="NAME=T",
                   help="per-class minimum score overriding --threshold, e.g. without_mask=0.3 (repeatable)")
    p.add_argument("--no-cross-class-nms", dest="cross_class_nms", action="store_false",
                   help="keep overlapping boxes of different classes (default: one box per face)")
    p.add_argument("--nms-iou", type=options.fraction(), default=DEFAULT_NMS_IOU, metavar="IOU",
                   help=f"IoU above which boxes are the same face (default {DEFAULT_NMS_IOU})")
    p.add_argument("--max-frames", type=options.count(), metavar="N", help="videos/streams: stop after N frames")
    p.add_argument("--threads", type=options.count(1024), metavar="N",
                   help="TFLite and ONNX models: interpreter (ONNX Runtime: intra-op) threads (default: every core)")
    p.add_argument("--runtime", choices=TFLITE_RUNTIMES, default="auto",
                   help="TFLite models: LiteRT, tf.lite, or auto (LiteRT where it imports; the default)")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None,
                   help="no progress bar (it is off anyway when stderr is not a terminal, e.g. in a service log)")
    video = p.add_argument_group("video files")
    video.add_argument("--no-audio", dest="keep_audio", action="store_false", help="drop the audio track")
    video.add_argument("--crf", type=options.whole(0, 51), default=Encoder.crf,
                       help=f"H.264 quality, 0-51, lower is better (default {Encoder.crf})")
    video.add_argument("--strict", action="store_true",
                       help="a video that ends before the frames it declares (or that ffmpeg reports corrupt) is an "
                            "error and nothing is written (default: a warning; the summary JSON records frames "
                            "read vs declared)")
    video.add_argument("--preset", default=Encoder.preset, choices=X264_PRESETS, metavar="PRESET",
                       help=f"x264 speed preset (default {Encoder.preset}: cheapest on the CPU the model needs; "
                            "veryfast or medium give files 2-4x smaller)")
    live = p.add_argument_group("webcams and streams")
    live.add_argument("--duration", type=options.seconds(), metavar="S", help="stop after S seconds")
    live.add_argument("--show", dest="display", action="store_const", const="window", default="auto",
                      help="show the annotated frames in a window (q or Esc stops; still images wait for a key), "
                           "for files too; where no window can open (headless OpenCV, no display) it says why and "
                           "goes on without one")
    live.add_argument("--display", choices=DISPLAY_CHOICES, default="auto",
                      help="window (as --show), notebook, none, or auto (default: a window for live sources when "
                           "one can open)")
    live.add_argument("--record-fps", type=options.rate, metavar="RATE",
                      help="recording frame rate, e.g. 30 or 30000/1001 "
                      "(default: the source's)")
    add_monitor_arguments(p)
    p.set_defaults(func=_predict)


# -- monitoring options ---------------------------------------------------------------------------------------
def add_monitor_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the tracking / counting / alert / review options (an argument group) to `parser`. Options left out
    keep :class:`~maskdetect.monitor.monitor.MonitorSettings`' defaults, which ``--help`` shows as read from it
    (so the two cannot drift apart)."""
    from maskdetect.monitor.hooks import SMTP_ENV, WEBHOOK_SHAPES
    from maskdetect.monitor.monitor import DEFAULT_SUMMARY_DIR, MonitorSettings

    d = MonitorSettings()
    group = parser.add_argument_group("tracking, counting and compliance alerts (videos and live sources)")
    add = group.add_argument
    add("--track", action="store_true", help="track faces: stable ids, smoothed classes, unique people counts")
    add("--smoothing-window", type=options.count(10_000), metavar="FRAMES",
        help=f"frames per track voting for its class ({d.smoothing_window})")
    add("--smoothing", choices=("majority", "score"),
        help=f"class vote: one per frame or confidence-weighted ({d.smoothing})")
    add("--count-window", type=options.seconds(high=86_400.0), metavar="S", dest="count_window_s",
        help=f"per-window counts length ({d.count_window_s:g} s)")
    add("--min-track-frames", type=options.whole(1, 1_000_000), metavar="N",
        help=f"ignore tracks seen in fewer frames ({d.min_track_frames})")
    add("--alert-threshold", type=options.fraction(), metavar="T",
        help=f"alert when the fraction wearing masks correctly is below T ({d.alert_threshold})")
    add("--alert-seconds", type=options.seconds(zero=True), metavar="S",
        help=f"... for at least S seconds ({d.alert_seconds:g})")
    add("--alert-margin", type=options.fraction(), metavar="M", help=f"clear at T + M or above ({d.alert_margin})")
    add("--alert-cooldown", type=options.seconds(zero=True), metavar="S", dest="alert_cooldown_s",
        help=f"minimum seconds between two alerts ({d.alert_cooldown_s:g})")
    add("--alert-command", metavar="CMD", help="run CMD (no shell) for each alert event; event JSON on stdin "
        "and in $MASKDETECT_EVENT")
    add("--alert-url", metavar="URL", help="POST each alert event to URL (as JSON, or see --alert-format)")
    add("--alert-format", choices=WEBHOOK_SHAPES, default="json",
        help="body of --alert-url: json (the event), slack / discord (an incoming webhook's message), teams (a "
             "Workflows Adaptive Card; teams-legacy: an Office 365 connector's), ntfy (an ntfy topic URL); discord "
             "and ntfy also get the alert's snapshot")
    add("--alert-email", action="append", metavar="ADDRESS",
        help=f"e-mail each alert event to ADDRESS (repeatable) through the server in ${SMTP_ENV}")
    add("--hook-timeout", type=options.seconds(high=3600.0), default=10.0, metavar="S",
        help="timeout of each hook call (10 s)")
    add("--events", type=Path, metavar="FILE", dest="events_path",
        help="alert events JSON-lines file (default <out>.events.jsonl)")
    add("--review-dir", type=Path, metavar="DIR",
        help="save uncertain / class-flipping frames with Pascal VOC pre-annotations for review (never replaces "
             "a file there: new items get new names)")
    add("--review-every", type=options.count(), metavar="N", dest="review_every_n_frames",
        help=f"per reason, at most one review frame per N frames ({d.review_every_n_frames})")
    add("--review-max", type=options.whole(0, 1_000_000), metavar="N", dest="review_max_frames",
        help=f"at most N review frames ({d.review_max_frames})")
    add("--summary-dir", type=Path, metavar="DIR",
        help=f"where the summary goes when the run writes no --out or --json (default ./{DEFAULT_SUMMARY_DIR}/)")
    return parser


#: Options that turn monitoring on (any of them).
_ENABLING = ("track", "alert_threshold", "alert_seconds", "alert_cooldown_s", "alert_command", "alert_url",
             "alert_email", "events_path", "review_dir")
#: Options that go to MonitorSettings under their own name when given.
_SETTINGS = ("track", "smoothing_window", "smoothing", "count_window_s", "min_track_frames", "alert_threshold",
             "alert_seconds", "alert_margin", "alert_cooldown_s", "events_path", "review_dir",
             "review_every_n_frames", "review_max_frames", "summary_dir")


def monitor_from_args(args: argparse.Namespace):
    """The :class:`~maskdetect.monitor.monitor.Monitor` the options ask for, or None when no monitoring option
    was given. The loop tells it the frame rate, the source and where the run writes."""
    import logging

    from maskdetect.monitor.hooks import CommandHook, EmailHook, UrlHook
    from maskdetect.monitor.monitor import Monitor, MonitorSettings

    if not any(getattr(args, name, None) not in (None, False) for name in _ENABLING):
        return None
    timeout = getattr(args, "hook_timeout", 10.0)
    hooks = []
    if getattr(args, "alert_command", None):
        hooks.append(CommandHook(args.alert_command, timeout_s=timeout))
    if getattr(args, "alert_url", None):
        hooks.append(UrlHook(args.alert_url, timeout_s=timeout, shape=getattr(args, "alert_format", "json")))
    if getattr(args, "alert_email", None):
        hooks.append(EmailHook(args.alert_email, timeout_s=timeout))
    for hook in hooks:
        if not isinstance(hook, CommandHook):
            logging.getLogger(__name__).info("alert events will be sent by %s", hook.name)  # the name is redacted
    given = {name: getattr(args, name) for name in _SETTINGS if getattr(args, name, None) not in (None, False)}
    return Monitor(MonitorSettings(**{**given, "track": bool(getattr(args, "track", False))}), hooks=hooks)


# -- the command ----------------------------------------------------------------------------------------------
def _predict(args: argparse.Namespace) -> int:
    from maskdetect.errors import ConfigError, MaskdetectError
    from maskdetect.infer.bundle import ExportBundle
    from maskdetect.infer.loop import predict_source
    from maskdetect.infer.predictor import Predictor, bundled_model
    from maskdetect.infer.sources import open_source
    from maskdetect.infer.video import Encoder
    from maskdetect.redact import redact

    encoder = Encoder(crf=args.crf, preset=args.preset)
    source = open_source(args.source, max_frames=args.max_frames, strict=args.strict)
    try:
        shown = args.display in ("window", "notebook")
        if not source.live and args.out is None and args.json is None and not shown:
            raise ConfigError("nothing to write or show: pass --out (annotated output), --json (detections) "
                              "and/or --show")
        monitor = monitor_from_args(args)
        model_inputs = {"--model": args.model or bundled_model()}
        try:  # the model's sidecars are inputs too
            model_inputs.update(ExportBundle.open(args.model).guarded_inputs(args.classifier))
        except MaskdetectError:
            pass  # not a model: the outputs are checked first, then loading it says what is wrong and the fix
    except BaseException:
        source.close()
        raise

    def load() -> Predictor:  # after every output was checked
        return Predictor(args.model, threshold=args.threshold, class_thresholds=dict(args.class_threshold),
                         cross_class_nms=args.cross_class_nms, nms_iou=args.nms_iou, num_threads=args.threads,
                         tflite_runtime=args.runtime, classifier=args.classifier)

    summary = predict_source(load, source, args.out, json_path=args.json, monitor=monitor,
                             max_frames=args.max_frames, duration_s=args.duration, display=args.display,
                             record_fps=args.record_fps, keep_audio=args.keep_audio, encoder=encoder,
                             progress=args.progress, inputs=model_inputs)
    written = [str(p) for p in (summary.out_path, summary.json_path) if p is not None]
    if monitor is not None and summary.monitor is not None:
        written.append(str(monitor.paths["summary"]))
    speed = summary.speed_line()
    if speed:
        print(speed)
    unit = "image(s)" if source.fps is None else "frames"
    stopped = " (stopped)" if summary.interrupted else ""
    dropped = f", {summary.frames_dropped} dropped as stale" if source.live else ""
    print(f"{redact(str(args.source))}: {summary.frames} {unit}{dropped}, {summary.detections} detection(s), "
          f"{summary.fps:.1f}/s{stopped}" + (f" -> {', '.join(written)}" if written else ""))
    return 0

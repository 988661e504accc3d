"""``maskdetect watch`` and ``maskdetect batch``: thin faces over :mod:`maskdetect.site`."""

from __future__ import annotations

import argparse
from pathlib import Path

from maskdetect.cli import options


def register(subparsers) -> None:
    from maskdetect.site.camera import PRIVACY_MODES

    w = subparsers.add_parser(
        "watch", help="watch many cameras at once: alerts, zones, segmented recordings, a live dashboard",
        description="Watch the cameras of SITE.yaml (or each --source) in one process with one model: per camera "
                    "its tracker, compliance alerts and hooks, zone counts, detections and events as JSON Lines, "
                    "and recordings in segments under OUT/<camera>/. A dropped stream is retried with backoff "
                    "and resumes in a new segment. Stop with Ctrl-C.")
    w.add_argument("site", nargs="?", type=Path, metavar="SITE.yaml",
                   help="the site file: cameras with name, source, zones, thresholds and hooks; ${VAR} reads a "
                        "secret from the environment (see the README)")
    w.add_argument("--source", action="append", default=[], metavar="[NAME=]SRC",
                   help="a camera (stream URL, webcam index or video file), instead of a site file (repeatable)")
    w.add_argument("--out", type=Path, required=True, metavar="DIR", help="where the cameras' folders go")
    w.add_argument("--model", metavar="EXPORT", help="exported model (default: the bundled one)")
    w.add_argument("--segment-minutes", type=options.real(0.0, 525_600.0, low_open=True), default=10.0, metavar="M",
                   help="length of a recording segment (default 10)")
    w.add_argument("--retention-hours", type=options.real(0.0, 1_000_000.0, low_open=True), metavar="H",
                   help="delete recording segments and snapshots older than H hours")
    w.add_argument("--retention-gb", type=options.real(0.0, 1_000_000.0, low_open=True), metavar="GB",
                   help="delete the oldest segments and snapshots while all cameras' take more than GB")
    w.add_argument("--detect-every", type=options.count(10_000), default=1, metavar="K",
                   help="run the detector on every K-th frame; boxes are carried between (default 1)")
    w.add_argument("--privacy", choices=PRIVACY_MODES, default="off",
                   help="blur: faces blurred in recordings, snapshots and the dashboard; detection records keep "
                        "only boxes and classes")
    w.add_argument("--no-record", dest="record", action="store_false", help="write no video segments")
    w.add_argument("--dashboard", nargs="?", const="127.0.0.1:8080", metavar="[HOST:]PORT",
                   help="serve the live dashboard (default 127.0.0.1:8080; any other address needs the token "
                        "in $MASKDETECT_DASHBOARD_TOKEN, or one printed once at start)")
    w.add_argument("--duration", type=options.seconds(), metavar="S", help="stop after S seconds")
    w.set_defaults(func=_watch)

    b = subparsers.add_parser(
        "batch", help="run every video of a folder (or glob) as predict --track does, then a site report",
        description="Per video, what `maskdetect predict --track` writes (annotated video, detections JSON, "
                    "summary, compliance plot, events) into OUT, then site_report.csv and site_report.html across "
                    "the videos. Resumable: a video already done from the same file (SHA-256) and settings is "
                    "skipped.")
    b.add_argument("--source", required=True, metavar="DIR|GLOB", help="a folder of videos, or a quoted glob")
    b.add_argument("--out", type=Path, required=True, metavar="DIR", help="the output folder")
    b.add_argument("--model", metavar="EXPORT", help="exported model (default: the bundled one)")
    b.add_argument("--workers", type=options.count(256), default=1, metavar="N", help="local worker processes (1)")
    b.add_argument("--ray", nargs="?", const=True, default=False, metavar="ADDRESS",
                   help="run as Ray tasks (one model per Ray worker): on a local Ray, or the cluster at ADDRESS "
                        "(e.g. auto, or ray://head:10001); needs `pip install ray`")
    b.set_defaults(func=_batch)


def _watch(args: argparse.Namespace) -> int:
    from maskdetect.errors import ConfigError
    from maskdetect.fileio import atomic_write_json
    from maskdetect.site.config import cameras_from_sources, load_site
    from maskdetect.site.watch import watch

    if (args.site is None) == (not args.source):
        raise ConfigError("give a site file (maskdetect watch SITE.yaml) or --source, one of the two")
    cameras = load_site(args.site) if args.site is not None else cameras_from_sources(args.source)

    def ready(handle) -> None:
        server = handle.server
        if server is not None:
            print(f"dashboard: {server.url}", flush=True)
            if server.token_generated:
                print(f"dashboard token (shown once): {server.token}", flush=True)

    result = watch(cameras, args.out, model=args.model, segment_minutes=args.segment_minutes,
                   retention_hours=args.retention_hours, retention_gb=args.retention_gb,
                   detect_every=args.detect_every, privacy=args.privacy, record=args.record,
                   dashboard=args.dashboard, duration_s=args.duration, on_ready=ready)
    for name, camera in result["cameras"].items():
        print(f"{name}: {camera['frames']} frames, {camera['segments']} segment(s), {camera['reconnects']} "
              f"reconnect(s), {camera['status']} -> {args.out / name}")
    if result["deleted"]:
        print(f"retention: deleted {len(result['deleted'])} file(s)")
    atomic_write_json(args.out / "watch.json", result)
    return 0


def _batch(args: argparse.Namespace) -> int:
    from maskdetect.site.batch import batch

    result = batch(args.source, args.out, model=args.model, workers=args.workers, ray=args.ray)
    print(f"{len(result['processed'])} video(s) processed, {len(result['skipped'])} skipped (already done) in "
          f"{result['seconds']:.1f} s -> {result['report']['html']}")
    return 0

"""``maskdetect data download|convert|inspect``: thin faces over :mod:`maskdetect.data`."""

from __future__ import annotations

import argparse
import json

from maskdetect.cli import options

FORMATS = ("voc", "kitti", "coco", "yolo", "tfrecord")


def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="download, convert and inspect datasets")
    sub = data.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")

    dl = sub.add_parser("download", help="download a dataset")
    dl_sub = dl.add_subparsers(dest="provider", required=True, metavar="PROVIDER")
    rf = dl_sub.add_parser(
        "roboflow", help="a Roboflow dataset version in TFRecord format",
        description="Download a Roboflow dataset version (TFRecord export) into --out. The API key is read from "
                    "$ROBOFLOW_API_KEY or Colab's secret store, never from the command line; it is never printed.")
    rf.add_argument("--workspace", help="workspace id (app.roboflow.com/WORKSPACE/PROJECT/VERSION)")
    rf.add_argument("--project", help="project id")
    rf.add_argument("--version", help="version number")
    rf.add_argument("--url", help="an export link instead (a zip, e.g. https://public.roboflow.com/ds/...?key=...)")
    rf.add_argument("--out", required=True, help="new folder for the export (train/, valid/, test/)")
    rf.set_defaults(func=_download_roboflow)

    cv = sub.add_parser(
        "convert", help="convert a dataset to sharded OD API TFRecords",
        description="Write DIR/{train,val,test}-0000k-of-0000n.tfrecord, DIR/label_map.pbtxt and DIR/manifest.json. "
                    "Bad inputs are skipped and listed in manifest.json (or stop the run with --strict).")
    cv.add_argument("--format", required=True, choices=FORMATS, help="input format")
    cv.add_argument("--source", required=True, help="dataset folder (or a COCO .json / a .tfrecord file)")
    cv.add_argument("--out", required=True,
                    help="output folder, outside --source; replaced when the conversion succeeds, and only if it is "
                         "new, empty or an earlier `data convert` output holding nothing but its own files")
    cv.add_argument("--split", default="0.8,0.1,0.1",
                    help="train,val,test fractions (default 0.8,0.1,0.1; 1,0,0 = all train), or 'keep' to keep "
                         "the source's train/valid/test folders")
    cv.add_argument("--map", action="append", metavar="OLD=NEW", default=None,
                    help="rename or merge a class (repeatable), e.g. --map face_covered=with_mask; names are compared "
                         "without case or separators, and the names data sets use for our three classes (Mask, "
                         "no-mask, without mask, mask_worn_incorrectly, ...) are known already")
    cv.add_argument("--allow-new-classes", action="store_true",
                    help="keep unknown class names as classes of their own (default: an error listing them)")
    cv.add_argument("--classes", help="comma-separated allowed class names (after --map), in label-map order; "
                                      "boxes of other classes are dropped (an error with --strict)")
    cv.add_argument("--seed", type=options.seed(), default=0, help="split seed (default 0)")
    cv.add_argument("--strict", action="store_true", help="stop at the first bad input instead of skipping it")
    cv.add_argument("--drop-blurred", action="store_true",
                    help="drop faces whose crop is blurred (Laplacian variance below --blur-threshold)")
    cv.add_argument("--blur-threshold", type=options.real(0.0, 1e6), default=None, metavar="T",
                    help="blur threshold (implies --drop-blurred; default when only --drop-blurred is given: "
                         "see maskdetect.data.images.DEFAULT_BLUR_THRESHOLD)")
    cv.add_argument("--workers", type=options.count(1024), default=None,
                    help="image decode/encode threads (default: all cores)")
    cv.add_argument("--shards", type=options.count(100_000), default=None,
                    help="files per split (default: ~1 per 64 MB)")
    cv.set_defaults(func=_convert)

    ins = sub.add_parser("inspect", help="validate and summarise TFRecords (any OD API TFRecord)",
                         description="Check every record; print counts per split and class, box sizes, duplicates "
                                     "and blur; with --out write report.json and PNGs.")
    ins.add_argument("path", help="a .tfrecord file or a folder of them")
    ins.add_argument("--out", help="folder for report.json, class_histogram.png, box_sizes.png, samples.png (outside "
                                   "PATH; replaced only if new, empty or an earlier `data inspect` output)")
    ins.add_argument("--json", action="store_true", help="print the whole report as JSON")
    ins.set_defaults(func=_inspect)


def _download_roboflow(args: argparse.Namespace) -> int:
    from maskdetect.data.roboflow import download_roboflow

    out = download_roboflow(args.out, workspace=args.workspace, project=args.project, version=args.version,
                            url=args.url)
    print(out)
    return 0


def _convert(args: argparse.Namespace) -> int:
    from maskdetect.data import convert
    from maskdetect.data.images import DEFAULT_BLUR_THRESHOLD

    min_blur = args.blur_threshold
    if args.drop_blurred and min_blur is None:
        min_blur = DEFAULT_BLUR_THRESHOLD
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    m = convert(args.format, args.source, args.out, split=args.split, class_map=args.map, classes=classes,
                seed=args.seed, strict=args.strict, min_blur=min_blur, workers=args.workers, num_shards=args.shards,
                allow_new_classes=args.allow_new_classes)
    print(f"{m.out}: {m.counts['total']['images']} images, {m.counts['total']['boxes']} boxes, "
          f"{m.images_per_s} images/s")
    for split in ("train", "val", "test"):
        if split in m.counts:
            c = m.counts[split]
            print(f"  {split:5s} {c['images']:6d} images  " + "  ".join(f"{k} {v}" for k, v in c["classes"].items()))
    print(f"  classes (label map order): {', '.join(m.classes)}")
    print(f"  skipped {len(m.skipped)} inputs, dropped {len(m.dropped_boxes)} boxes, clipped "
          f"{len(m.clipped_boxes)} boxes, {len(m.duplicates)} duplicate groups (see manifest.json)")
    for entry in m.skipped[:5]:
        print(f"  skipped {entry['item']}: {entry['reason']}")
    for entry in m.dropped_boxes[:5]:
        print(f"  dropped {entry['item']} {entry['box']}: {entry['reason']}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from maskdetect.data import inspect

    r = inspect(args.path, out=args.out)
    if args.json:
        print(json.dumps(r, indent=2))
        return 0 if not r["problems"] else 1
    print(f"{r['path']}: {r['valid_records']} of {r['records']} records valid, {len(r['files'])} files")
    for split, c in r["splits"].items():
        print(f"  {split:8s} {c['images']:6d} images {c['boxes']:7d} boxes  "
              + "  ".join(f"{k} {v}" for k, v in c["classes"].items()))
    s = r["box_size_px"]
    if s.get("count"):
        print(f"  box size sqrt(area) px: min {s['min']}  p5 {s['p5']}  median {s['median']}  p95 {s['p95']}  "
              f"max {s['max']}")
        print("  histogram: " + "  ".join(f"{k}: {v}" for k, v in s["histogram_sqrt_area"].items()))
    b = r["blur"]
    if b.get("count"):
        print(f"  blur (Laplacian variance of faces): p5 {b['p5']}  median {b['median']}  min {b['min']}")
    print(f"  duplicates (identical image bytes): {len(r['duplicates'])} groups")
    for note, n in r["notes"].items():
        print(f"  note: {n} records {note}")
    for p in r["problems"][:10]:
        print(f"  PROBLEM {p['record']}: {p['problem']}")
    if len(r["problems"]) > 10:
        print(f"  ... {len(r['problems']) - 10} more problems in report.json")
    if args.out:
        print(f"  wrote {args.out}/report.json and PNGs")
    return 0 if not r["problems"] else 1

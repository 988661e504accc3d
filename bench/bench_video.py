"""Video throughput: our overlapped `predict_source` loop vs the model alone vs a plain sequential OpenCV loop.

Makes a 1920x1080 (or ``--height`` 720) clip from ../shared/videos/one-unmasked-1280x720.mp4 (ffmpeg scale,
first N frames), then
for each backend (SavedModel, and TFLite when the export has one) measures on the same N frames:

* ``end_to_end_fps``: :func:`maskdetect.infer.loop.predict_source` (decode -> infer -> annotate -> H.264 encode,
  overlapped), wall time from the call to the finished file;
* ``model_only_fps``: ``Predictor.predict`` on the frames already decoded in memory;
* ``plain_loop_fps``: ``cv2.VideoCapture`` read -> RGB -> predict -> the same annotator -> ``cv2.VideoWriter``
  (mp4v), one frame after the other;
* ``live_loop_fps``: the webcam path: the clip played as a live camera at its own frame rate (newest frame only,
  recorded), frames processed per second, and the share of the camera's frames dropped as stale;

interleaved ``--repeats`` times (medians reported, every run listed), end to end both with ffmpeg's own thread
count and with one thread per ffmpeg; plus what decoding, annotating and encoding cost alone (``stages``). Prints
one JSON object with the ratios against the targets (end to end >= 0.9 x model only, and >= 1.3 x the plain
loop). Model load time is excluded everywhere.

Usage:
    python bench/bench_video.py [--model EXPORT] [--tflite FILE] [--height 1080] [--frames 60] [--repeats 3]
        [--out bench.json]

EXPORT defaults to workspace/runs/demo/export (what ``maskdetect demo`` makes).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO.parent / "shared" / "videos" / "one-unmasked-1280x720.mp4"
DEFAULT_EXPORT = REPO / "workspace" / "runs" / "demo" / "export"


def make_clip(source: Path, out: Path, frames: int, height: int = 1080) -> Path:
    from maskdetect.infer.video import ffmpeg_exe

    args = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", str(source),
            "-vf", f"scale={height * 16 // 9}:{height}:flags=bicubic", "-frames:v", str(frames), "-c:v", "libx264", "-preset", "fast",
            "-crf", "20", "-pix_fmt", "yuv420p", "-an", str(out)]
    subprocess.run(args, check=True)
    return out


def plain_opencv_loop(predictor, clip: Path, out: Path, frames: int) -> float:
    """The baseline: read, infer, draw, write, sequentially. Returns FPS."""
    import cv2

    from maskdetect.infer.annotate import FrameAnnotator

    annotator = FrameAnnotator(predictor.class_names)
    started = time.perf_counter()
    capture = cv2.VideoCapture(str(clip))
    fps = capture.get(cv2.CAP_PROP_FPS)
    writer = None
    done = 0
    while done < frames:
        ok, bgr = capture.read()
        if not ok:
            break
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        drawn = annotator.annotate(rgb, predictor.predict(rgb))
        if writer is None:
            writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (rgb.shape[1], rgb.shape[0]))
            if not writer.isOpened():
                raise RuntimeError("cv2.VideoWriter (mp4v) did not open")
        writer.write(cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
        done += 1
    capture.release()
    writer.release()
    return done / (time.perf_counter() - started)


def stage_costs(clip: Path, info, frames: list, workdir: Path, class_names: list[str]) -> dict:
    """What decoding, annotating and encoding cost alone (ms/frame): the CPU that end to end shares with the
    model on this machine."""
    from maskdetect.infer.annotate import FrameAnnotator
    from maskdetect.detections import Detections
    from maskdetect.infer.video import VideoReader, VideoWriter

    n = len(frames)
    costs = {}
    for threads in (0, 1):
        started = time.perf_counter()
        count = sum(1 for _ in VideoReader(clip, info=info, max_frames=n, threads=threads))
        costs[f"decode_ms_threads_{threads}"] = round(1e3 * (time.perf_counter() - started) / count, 1)
        started = time.perf_counter()
        with VideoWriter(workdir / "encode.mp4", info.fps, info.size_wh, threads=threads) as w:
            for frame in frames:
                w.write(frame)
        costs[f"encode_ms_threads_{threads}"] = round(1e3 * (time.perf_counter() - started) / n, 1)
    annotator = FrameAnnotator(class_names)
    h, w = frames[0].shape[:2]
    boxes = Detections(xyxy=[[w * 0.1 * i, h * 0.2, w * 0.1 * i + 120, h * 0.2 + 150] for i in range(5)],
                       confidence=[0.9] * 5, class_id=[i % 3 for i in range(5)])
    started = time.perf_counter()
    for frame in frames:
        annotator.annotate(frame, boxes)
    costs["annotate_ms_5_boxes"] = round(1e3 * (time.perf_counter() - started) / n, 1)
    return costs


def bench_backend(model: Path, clip: Path, frames_in_memory: list, workdir: Path, repeats: int) -> dict:
    """Model only, end to end (ffmpeg threads automatic and 1) and the plain loop, interleaved `repeats` times;
    medians."""
    import statistics

    from maskdetect.infer.loop import predict_source
    from maskdetect.infer.predictor import Predictor

    loaded = time.perf_counter()
    predictor = Predictor(model)
    load_s = time.perf_counter() - loaded
    n = len(frames_in_memory)

    def model_only() -> float:
        started = time.perf_counter()
        for frame in frames_in_memory:
            predictor.predict(frame)
        return n / (time.perf_counter() - started)

    def end_to_end(threads: int) -> float:
        started = time.perf_counter()
        summary = predict_source(predictor, clip, workdir / "e2e.mp4", max_frames=n, progress=False,
                                 ffmpeg_threads=threads)
        assert summary.frames == n, summary
        return n / (time.perf_counter() - started)

    def live() -> tuple[float, float]:
        """The clip played as a live camera (paced at its frame rate, newest frame only, recorded): frames
        processed per second, and the share of the camera's frames dropped because a newer one had arrived."""
        summary = predict_source(predictor, clip, workdir / "live.mp4", max_frames=n, live=True, progress=False)
        return summary.frames / summary.seconds, summary.frames_dropped / (summary.frames + summary.frames_dropped)

    runs: dict[str, list[float]] = {"model_only_fps": [], "end_to_end_fps": [], "end_to_end_ffmpeg_threads_1_fps": [],
                                    "plain_loop_fps": [], "live_loop_fps": [], "live_loop_dropped_share": []}
    for _ in range(repeats):
        runs["model_only_fps"].append(model_only())
        runs["end_to_end_fps"].append(end_to_end(0))
        runs["end_to_end_ffmpeg_threads_1_fps"].append(end_to_end(1))
        runs["plain_loop_fps"].append(plain_opencv_loop(predictor, clip, workdir / "plain.mp4", n))
        fps, dropped = live()
        runs["live_loop_fps"].append(fps)
        runs["live_loop_dropped_share"].append(dropped)
    result = {"model": str(model), "backend": predictor.backend, "load_s": round(load_s, 2), "repeats": repeats}
    result.update({key: round(statistics.median(values), 2) for key, values in runs.items()})
    result["all_runs_fps"] = {key: [round(v, 2) for v in values] for key, values in runs.items()}
    result["ms_per_frame_model_only"] = round(1e3 / result["model_only_fps"], 1)
    best = max(result["end_to_end_fps"], result["end_to_end_ffmpeg_threads_1_fps"])
    result["end_to_end_vs_model_only"] = round(result["end_to_end_fps"] / result["model_only_fps"], 3)
    result["end_to_end_vs_plain_loop"] = round(result["end_to_end_fps"] / result["plain_loop_fps"], 3)
    result["best_end_to_end_vs_model_only"] = round(best / result["model_only_fps"], 3)
    result["best_end_to_end_vs_plain_loop"] = round(best / result["plain_loop_fps"], 3)
    result["meets_0.9x_model_only"] = result["best_end_to_end_vs_model_only"] >= 0.9
    result["meets_1.3x_plain_loop"] = result["best_end_to_end_vs_plain_loop"] >= 1.3
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_EXPORT,
                        help="export dir or saved_model dir (default workspace/runs/demo/export)")
    parser.add_argument("--tflite", type=Path, help="TFLite model (default: model.tflite beside the export)")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--height", type=int, choices=(720, 1080), default=1080, help="clip height (16:9)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats; medians are reported")
    parser.add_argument("--source", type=Path, default=SOURCE)
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)

    import maskdetect  # (before TensorFlow)
    from maskdetect.infer.predictor import resolve_export
    from maskdetect.infer.video import probe_video, read_frames

    try:
        kind, saved_model = resolve_export(args.model)
    except Exception as exc:
        print(f"bench_video: {exc}\nRun `maskdetect demo` first or pass --model.", file=sys.stderr)
        return 2
    models = [saved_model] if kind == "saved_model" else []
    tflite = args.tflite
    if tflite is None:
        candidates = [p / "model.tflite" for p in (saved_model, saved_model.parent)]
        tflite = next((p for p in candidates if p.is_file()), None)
    if kind == "tflite":
        tflite = saved_model
    if tflite is not None:
        models.append(tflite)

    with tempfile.TemporaryDirectory(prefix="bench_video.") as tmp:
        workdir = Path(tmp)
        clip = make_clip(args.source, workdir / f"clip{args.height}.mp4", args.frames, args.height)
        info = probe_video(clip)
        frames = list(read_frames(clip, max_frames=args.frames))
        report = {
            "clip": {"source": args.source.name, "size_wh": list(info.size_wh), "fps": str(info.fps),
                     "frames": len(frames)},
            "machine": {"cpus": os.cpu_count(), "load_avg_start": os.getloadavg()[0]},
            "stages": stage_costs(clip, info, frames, workdir, list(maskdetect.CLASSES)),
            "backends": [bench_backend(model, clip, frames, workdir, args.repeats) for model in models],
        }
    by_backend = {b["backend"]: b for b in report["backends"]}
    if {"saved_model", "tflite"} <= by_backend.keys():
        report["saved_model_ms_per_frame"] = by_backend["saved_model"]["ms_per_frame_model_only"]
        report["tflite_ms_per_frame"] = by_backend["tflite"]["ms_per_frame_model_only"]
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

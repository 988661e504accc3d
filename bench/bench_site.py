"""Many cameras, one site: frames per second per camera of a 4-camera `watch` on 720p stand-in streams (loopback
ffmpeg, HTTP MPEG-TS) with --detect-every 1 and 3, and `batch` throughput over N clips with 1 and 2 local
worker processes and on a local Ray (started in-process). Prints JSON.

    python bench/bench_site.py [--cameras 4] [--seconds 40] [--clips 8] [--skip-ray]

The machine this runs on is shared: say how busy it was next to any figure (the JSON records the load).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tests' stand-in cameras

from site_streams import MASKED, UNMASKED, StandinStream, make_clip  # noqa: E402


def watch_fps(predictor, folder: Path, cameras: int, seconds: float, every: int) -> dict:
    from maskdetect.site.config import cameras_from_sources
    from maskdetect.site.watch import watch

    clips = [make_clip(folder / f"cam{i}.mp4", UNMASKED if i % 2 else MASKED, seconds=4, fps=25,
                       size_wh=(1280, 720)) for i in range(cameras)]
    streams = [StandinStream(c).start() for c in clips]
    started = {}

    def ready(handle):
        started["t"] = time.monotonic()

    try:
        result = watch(cameras_from_sources([s.url for s in streams]), folder / f"out-k{every}", predictor=predictor,
                       detect_every=every, duration_s=seconds, on_ready=ready)
    finally:
        for s in streams:
            s.stop()
    wall = time.monotonic() - started["t"]
    per_camera = {n: round(c["frames"] / wall, 2) for n, c in result["cameras"].items()}
    return {"detect_every": every, "seconds": round(wall, 1), "fps_per_camera": per_camera,
            "fps_median": sorted(per_camera.values())[len(per_camera) // 2]}


def batch_rate(folder: Path, clips: int, mode: str) -> dict:
    from maskdetect.site.batch import batch

    archive = folder / "archive"
    if not archive.is_dir():
        archive.mkdir()
        for i in range(clips):
            make_clip(archive / f"clip{i}.mp4", UNMASKED if i % 2 else MASKED, seconds=2, fps=10)
    out = folder / f"batch-{mode}"
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    if mode == "ray":
        import ray

        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
        try:
            started = time.perf_counter()  # the cluster's start-up is not the batch's
            result = batch(archive, out, ray=True, progress=False)
        finally:
            ray.shutdown()
    else:
        result = batch(archive, out, workers=int(mode), progress=False)
    seconds = time.perf_counter() - started
    frames = sum(r["frames"] for r in result["videos"])
    return {"mode": "ray" if mode == "ray" else f"{mode} worker(s)", "clips": clips, "frames": frames,
            "seconds": round(seconds, 1), "frames_per_s": round(frames / seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from maskdetect.infer.predictor import Predictor

    predictor = Predictor(None)
    folder = Path(tempfile.mkdtemp(prefix="bench-site-"))
    report = {"machine": {"cpus": os.cpu_count(), "load_avg_1m_at_start": round(os.getloadavg()[0], 2)},
              "model": str(predictor.model_path.name), "watch": [], "batch": []}
    try:
        for every in (1, 3):
            report["watch"].append(watch_fps(predictor, folder, args.cameras, args.seconds, every))
        for mode in ("1", "2") + (() if args.skip_ray else ("ray",)):
            try:
                report["batch"].append(batch_rate(folder, args.clips, mode))
            except Exception as exc:  # a Ray that cannot start here is reported, not hidden
                report["batch"].append({"mode": mode, "error": str(exc)[:300]})
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    report["machine"]["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

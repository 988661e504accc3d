"""Many cameras, one site: watch FPS, alert latency, reconnect time, batch throughput (local and Ray) and RSS.

Measured on stand-in cameras (720p clips of the bundled sample photos served by ffmpeg on loopback as HTTP
MPEG-TS, ``tests/site_streams.py``), for the site issue's goals. Prints JSON; each figure is measured
``--repeats`` times (interleaved, so a change in the machine's load spreads over every figure) and reported as its
median with all values.

    python bench/bench_site.py [--parts watch,alert,reconnect,batch] [--repeats 3] [--cameras 4] [--seconds 40]
                               [--alert-seconds 3] [--down-seconds 4] [--clips 8] [--clip-seconds 8]
                               [--ray cluster|inprocess|both|none]
    python bench/bench_site.py --rss-minutes 30 [--cameras 4]

Parts:

* ``watch``: frames per second per camera of a ``--cameras`` watch (cameras alternately masked and unmasked) over
  ``--seconds``, with ``--detect-every`` 1 and 3 (goal: >= 8 FPS, or >= 20 FPS with K = 3).
* ``alert``: alert latency. Camera ``cam1`` plays only the unmasked clip (every frame is unmasked), the others
  the masked one; ``cam1`` has ``alert_seconds = --alert-seconds`` and a webhook (``{"url": ...}``, JSON) to a
  receiver on loopback. The *first unmasked frame* is the moment the watch's detector is handed ``cam1``'s first
  frame (``time.monotonic()``, noted by a wrapper around the shared predictor, in ``cam1``'s thread); the hook's
  time is when the receiver gets the ``alert_raised`` POST (before reading its body). Latency = hook time -
  first-frame time - ``--alert-seconds`` (goal: <= 1 s). The stream's connection time is not in it.
* ``reconnect``: ``cam1``'s stand-in is killed once the camera runs; once the camera shows ``reconnecting`` it
  stays down ``--down-seconds`` and is restarted on the same port. Reconnect time = from the moment the
  restarted stand-in listens again (its ``start()`` returns; polled every 50 ms) to the detector being handed
  ``cam1``'s first frame of the new connection, which the camera records in a new segment (checked) (goal:
  <= 5 s). The camera's backoff (0.5 s doubling to 3 s) is in it, so the figure varies with the phase.
* ``batch``: ``maskdetect batch`` throughput over ``--clips`` clips of ``--clip-seconds`` at 25 FPS (320x240),
  with 1 and 2 local worker processes, and on Ray: ``cluster`` (default) starts a real local cluster, ``ray start
  --head`` plus a second node joining it with ``ray start --address`` (each ``--num-cpus 1``, standing in for a
  second machine), and runs ``batch(ray=ADDRESS)`` as ``maskdetect batch --ray ADDRESS`` does; ``inprocess``
  uses ``ray.init(num_cpus=2)`` in this process. The timing starts once Ray is connected (a cluster's start-up is
  not the batch's) and includes loading the model in each worker, as with local workers. The cluster is stopped
  by terminating its two ``ray start --block`` processes (never ``ray stop``: that stops every Ray on the machine).

With ``--rss-minutes M`` it measures memory instead: a `watch` of the cameras (recording, 10-minute segments)
runs for M minutes while the resident memory of this process and its ffmpeg children is sampled every 30 s; it
reports the samples and the change from minute 5 to the end (the site issue's goal: within 10%).

The machine this runs on is shared: say how busy it was next to any figure (the JSON records the load).
"""

from __future__ import annotations

import argparse
import bisect
import dataclasses
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tests' stand-in cameras

from site_streams import MASKED, UNMASKED, StandinStream, free_port, make_clip, wait_for  # noqa: E402

PARTS = ("watch", "alert", "reconnect", "batch")
RAY_MODES = {"cluster": ("ray-cluster",), "inprocess": ("ray-inprocess",),
             "both": ("ray-cluster", "ray-inprocess"), "none": ()}


# -- stand-ins and clocks -------------------------------------------------------------------------------------
def start_streams(folder: Path, photos: list[str]) -> list[StandinStream]:
    """One 720p stand-in camera at 25 FPS, looping, per photo (each photo's 4 s clip made once)."""
    streams = []
    for photo in photos:
        clip = folder / f"{Path(photo).stem}-720p.mp4"
        if not clip.is_file():
            make_clip(clip, photo, seconds=4, fps=25, size_wh=(1280, 720))
        streams.append(StandinStream(clip).start())
    return streams


def alternate(cameras: int) -> list[str]:
    """Masked, unmasked, masked, ... for `cameras` cameras."""
    return [UNMASKED if i % 2 else MASKED for i in range(cameras)]


def first_unmasked(cameras: int) -> list[str]:
    """The first camera unmasked, the others masked."""
    return [UNMASKED] + [MASKED] * (cameras - 1)


class FrameClock:
    """The shared predictor, noting when its detector is handed each frame (``time.monotonic()``), per camera
    (a camera's frames are predicted in its own thread, ``camera-<name>``). Use with ``detect_every=1``."""

    def __init__(self, predictor: Any) -> None:
        self.predictor, self.class_names = predictor, predictor.class_names
        self.times: dict[str, list[float]] = {}

    def predict(self, image: Any) -> Any:
        self.times.setdefault(threading.current_thread().name.removeprefix("camera-"), []).append(time.monotonic())
        return self.predictor.predict(image)

    def first_after(self, camera: str, moment: float) -> float | None:
        """The first time `camera`'s frame reached the detector at or after `moment` (None: none yet)."""
        times = self.times.get(camera, [])
        at = bisect.bisect_left(times, moment)
        return times[at] if at < len(times) else None


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        arrived = time.monotonic()
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.events.append((arrived, json.loads(body)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def start_receiver() -> ThreadingHTTPServer:
    """A webhook receiver on loopback: ``server.events`` gets ``(arrival monotonic time, event)`` per POST."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    httpd.events = []
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def run_watch(predictor: Any, folder: Path, photos: list[str], out_name: str, *, seconds: float | None = None,
              configure: Callable[[list], list] = lambda cameras: cameras,
              scenario: Callable[[Any, list[StandinStream]], None] | None = None, **options: Any) -> dict:
    """A `watch` of one stand-in per photo, for `seconds` or until `scenario(handle, streams)` (run in a thread once
    every camera started) returns; `configure` may change the cameras. The watch's result, with ``"started"``
    (monotonic time of on_ready) and ``"error"`` (the scenario's, or None)."""
    from maskdetect.site.config import cameras_from_sources
    from maskdetect.site.watch import watch

    streams = start_streams(folder, photos)
    marks: dict[str, Any] = {"error": None}

    def play(handle: Any) -> None:
        try:
            scenario(handle, streams)
        except Exception as exc:
            marks["error"] = str(exc)
        finally:
            handle.stop()

    def ready(handle: Any) -> None:
        marks["started"] = time.monotonic()
        if scenario is not None:
            threading.Thread(target=play, args=(handle,), daemon=True).start()

    try:
        result = watch(configure(cameras_from_sources([s.url for s in streams])), folder / out_name,
                       predictor=predictor, duration_s=seconds, on_ready=ready, **options)
    finally:
        for s in streams:
            s.stop()
        shutil.rmtree(folder / out_name, ignore_errors=True)
    return {**result, **marks}


# -- the parts --------------------------------------------------------------------------------------------------
def watch_fps(predictor: Any, folder: Path, cameras: int, seconds: float, every: int) -> dict:
    result = run_watch(predictor, folder, alternate(cameras), f"out-k{every}", seconds=seconds, detect_every=every)
    wall = time.monotonic() - result["started"]
    per_camera = {n: round(c["frames"] / wall, 2) for n, c in result["cameras"].items()}
    return {"detect_every": every, "seconds": round(wall, 1), "fps_per_camera": per_camera,
            "fps_median": statistics.median(per_camera.values())}


def alert_latency(predictor: Any, folder: Path, cameras: int, alert_seconds: float) -> dict:
    clock, receiver = FrameClock(predictor), start_receiver()
    url = f"http://127.0.0.1:{receiver.server_address[1]}/alert"

    def with_hook(configs: list) -> list:
        return [dataclasses.replace(configs[0], alert_seconds=alert_seconds, hooks=({"url": url},))] + configs[1:]

    def until_alert(handle: Any, streams: list) -> None:
        wait_for(lambda: any(e["event"] == "alert_raised" for _, e in receiver.events), 60 + alert_seconds,
                 "the alert hook")

    try:
        result = run_watch(clock, folder, first_unmasked(cameras), "out-alert", configure=with_hook,
                           scenario=until_alert)
    finally:
        receiver.shutdown()
        receiver.server_close()
    if result["error"]:
        return {"error": result["error"]}
    first = clock.first_after("cam1", 0.0)
    hook = next(t for t, e in receiver.events if e["event"] == "alert_raised")
    return {"alert_seconds": alert_seconds, "first_frame_to_hook_s": round(hook - first, 3),
            "latency_s": round(hook - first - alert_seconds, 3)}


def reconnect_time(predictor: Any, folder: Path, cameras: int, down_seconds: float) -> dict:
    clock = FrameClock(predictor)
    marks: dict[str, float] = {}

    def drop_and_return(handle: Any, streams: list) -> None:
        state, stream = handle.cameras["cam1"], streams[0]
        wait_for(lambda: state.frames >= 5, 60, "cam1's first frames")
        segments = state.segments
        stream.stop()
        wait_for(lambda: state.status == "reconnecting", 30, "cam1 to show reconnecting")
        time.sleep(down_seconds)
        stream.start()
        marks["back"] = time.monotonic()
        marks["first"] = wait_for(lambda: clock.first_after("cam1", marks["back"]), 60, "cam1's first new frame")
        wait_for(lambda: state.segments > segments, 10, "cam1's new segment")

    result = run_watch(clock, folder, alternate(cameras), "out-reconnect", scenario=drop_and_return)
    if result["error"]:
        return {"error": result["error"]}
    return {"down_seconds": down_seconds, "reconnects": result["cameras"]["cam1"]["reconnects"],
            "seconds": round(marks["first"] - marks["back"], 3)}


#: On a busy machine a Ray node's Python agents take longer to start than its raylet waits for them to write
#: their ports (15 s, then it aborts): so each node starts no process it does not need (no dashboard, autoscaler
#: monitor or log monitor), and gets its agents' ports. It can still fail on a machine as loaded as ~18 on 2 cores.
AGENT_PORTS = ("--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--runtime-env-agent-port",
               "--metrics-export-port")


class LocalRayCluster:
    """A real Ray cluster on this machine: ``ray start --head`` and a second node joining it with ``ray start
    --address`` (each ``--num-cpus 1``, its own ports, and a temporary folder of ours), both ``--block``, so that
    terminating those two processes stops exactly this cluster (``ray stop`` would stop every Ray here)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.address = f"127.0.0.1:{free_port()}"
        self.processes: list[subprocess.Popen] = []

    def _start_node(self, *role: str) -> None:
        ray = Path(sys.executable).with_name("ray")
        log = (self.folder / f"ray-node-{len(self.processes)}.log").open("ab")
        self.processes.append(subprocess.Popen(
            [str(ray), "start", *role, "--block", "--num-cpus", "1", "--disable-usage-stats",
             "--object-store-memory", str(200 * 1024 ** 2), "--include-log-monitor", "false",
             *[arg for option in AGENT_PORTS for arg in (option, str(free_port()))]],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        log.close()  # (the node has its own copy)

    def __enter__(self) -> "LocalRayCluster":
        # token authentication for the nodes and this driver alike: left unset, a new head turns it on while a
        # joining node decides from ~/.ray/auth_token, and may be refused ("InvalidAuthToken")
        os.environ["RAY_AUTH_MODE"] = "token"
        port = self.address.rsplit(":", 1)[1]
        self._start_node("--head", "--port", port, "--node-ip-address", "127.0.0.1", "--include-dashboard", "false",
                         "--no-monitor", "--ray-client-server-port", str(free_port()),
                         "--temp-dir", str(self.folder / "ray"))
        try:
            wait_for(lambda: self._started(0), 180, "the Ray head node")
            self._start_node("--address", self.address, "--node-ip-address", "127.0.0.1")
            wait_for(lambda: self._started(1), 180, "the second Ray node")
        except BaseException:
            self.__exit__()
            raise
        return self

    def _started(self, node: int) -> bool:
        """``ray start`` of node `node` printed that its node runs; RuntimeError with its log if it exited."""
        log = (self.folder / f"ray-node-{node}.log").read_text(errors="replace")
        if self.processes[node].poll() is not None:
            last = [line for line in log.splitlines() if line.strip()][-1:] or ["(no output)"]
            raise RuntimeError(f"Ray node {node} exited ({self.folder}/ray-node-{node}.log): {last[0]}")
        return "Ray runtime started" in log

    def __exit__(self, *exc: Any) -> None:
        import psutil

        family = []  # psutil's Process objects: a pid reused meanwhile is not killed
        for process in self.processes:
            try:
                family += psutil.Process(process.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                pass
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for child in family:  # what the nodes started and left behind (each by its id)
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass


def make_archive(folder: Path, clips: int, clip_seconds: float) -> Path:
    """`clips` 320x240 clips of `clip_seconds` at 25 FPS, alternately masked and unmasked."""
    archive = folder / "archive"
    archive.mkdir()
    for i, photo in enumerate(alternate(clips)):
        make_clip(archive / f"clip{i}.mp4", photo, seconds=clip_seconds, fps=25)
    return archive


def batch_rate(archive: Path, folder: Path, mode: str, ray_address: str | None = None) -> dict:
    """Throughput of one `batch` over the archive: ``mode`` is a number of local workers, ``ray-inprocess`` or
    ``ray-cluster`` (at `ray_address`)."""
    from maskdetect.site.batch import batch

    out = folder / f"batch-{mode}"
    shutil.rmtree(out, ignore_errors=True)
    if mode.startswith("ray"):
        import ray

        if mode == "ray-cluster":
            ray.init(address=ray_address, logging_level="ERROR")
        else:
            ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
        try:
            nodes = len([n for n in ray.nodes() if n["Alive"]])
            started = time.perf_counter()  # Ray's start-up and connection are not the batch's
            result = batch(archive, out, ray=ray_address if mode == "ray-cluster" else True, progress=False)
        finally:
            ray.shutdown()
    else:
        nodes = None
        started = time.perf_counter()
        result = batch(archive, out, workers=int(mode), progress=False)
    seconds = time.perf_counter() - started
    shutil.rmtree(out, ignore_errors=True)
    frames = sum(r["frames"] for r in result["videos"])
    return {"mode": mode if mode.startswith("ray") else f"{mode} worker(s)", "clips": len(result["videos"]),
            "frames": frames, "ray_nodes": nodes, "worker_pids": len({r["worker_pid"] for r in result["videos"]}),
            "seconds": round(seconds, 1), "frames_per_s": round(frames / seconds, 2)}


# -- repeats ----------------------------------------------------------------------------------------------------
def attempt(measure: Callable[[], dict]) -> dict:
    """`measure()`, or ``{"error": ...}`` if it failed (reported, not hidden)."""
    try:
        return measure()
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}


def summary(runs: list[dict], key: str, **labels: Any) -> dict:
    """``{labels..., key: {"median", "values"}, "runs"}`` over the runs that did not fail."""
    values = [r[key] for r in runs if "error" not in r]
    return {**labels, key: {"median": statistics.median(values) if values else None, "values": values},
            "runs": runs}


def measure_watch(predictor: Any, folder: Path, args: argparse.Namespace) -> list[dict]:
    runs: dict[int, list[dict]] = {1: [], 3: []}
    for _ in range(args.repeats):
        for every in runs:
            runs[every].append(attempt(lambda: watch_fps(predictor, folder, args.cameras, args.seconds, every)))
    return [summary(r, "fps_median", detect_every=every) for every, r in runs.items()]


def measure_batch(folder: Path, args: argparse.Namespace) -> dict:
    archive = make_archive(folder, args.clips, args.clip_seconds)
    modes = ["1", "2", *RAY_MODES[args.ray]]
    runs: dict[str, list[dict]] = {m: [] for m in modes}
    cluster = LocalRayCluster(folder) if "ray-cluster" in modes else None
    try:
        if cluster is not None:
            try:
                cluster.__enter__()
            except Exception as exc:
                runs["ray-cluster"] = [{"error": f"the local Ray cluster did not start: {str(exc)[:300]}"}]
                modes.remove("ray-cluster")
        for _ in range(args.repeats):
            for mode in modes:
                runs[mode].append(attempt(lambda: batch_rate(archive, folder, mode, cluster and cluster.address)))
    finally:
        if cluster is not None:
            cluster.__exit__()
    figures = {m: summary(r, "frames_per_s", mode=m) for m, r in runs.items()}
    rate = {m: f["frames_per_s"]["median"] for m, f in figures.items()}
    ratio = lambda a, b: round(rate[a] / rate[b], 3) if rate.get(a) and rate.get(b) else None  # noqa: E731
    return {"clips": args.clips, "clip_seconds": args.clip_seconds, "modes": list(figures.values()),
            "two_workers_vs_one": ratio("2", "1"),
            **{f"{m}_vs_two_workers": ratio(m, "2") for m in RAY_MODES[args.ray]}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each figure (the median is reported)")
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=40, help="length of each watch FPS run")
    parser.add_argument("--alert-seconds", type=float, default=3.0, help="the alert camera's alert_seconds")
    parser.add_argument("--down-seconds", type=float, default=4.0, help="how long the dropped stream stays down")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--clip-seconds", type=float, default=8.0, help="length of each batch clip (25 FPS)")
    parser.add_argument("--ray", choices=sorted(RAY_MODES), default="cluster", help="where batch runs on Ray")
    parser.add_argument("--rss-minutes", type=float, help="measure memory over a watch this long instead")
    args = parser.parse_args()
    parts = [p for p in args.parts.split(",") if p]
    if set(parts) - set(PARTS) or args.repeats < 1 or args.cameras < 1:
        parser.error(f"--parts takes some of {', '.join(PARTS)}; --repeats and --cameras must be at least 1")
    logging.basicConfig(level=logging.WARNING)
    from maskdetect.infer.predictor import Predictor

    predictor = Predictor(None)
    folder = Path(tempfile.mkdtemp(prefix="bench-site-"))
    report: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "load_avg_1m_at_start": round(os.getloadavg()[0], 2)},
                              "model": str(predictor.model_path.name), "repeats": args.repeats, "cameras": args.cameras}
    started = time.monotonic()
    try:
        if args.rss_minutes:
            report["rss"] = watch_rss(predictor, folder, args.cameras, args.rss_minutes)
            return
        if "watch" in parts:
            report["watch"] = measure_watch(predictor, folder, args)
        if "alert" in parts:
            report["alert_latency"] = summary(
                [attempt(lambda: alert_latency(predictor, folder, args.cameras, args.alert_seconds))
                 for _ in range(args.repeats)], "latency_s")
        if "reconnect" in parts:
            report["reconnect"] = summary(
                [attempt(lambda: reconnect_time(predictor, folder, args.cameras, args.down_seconds))
                 for _ in range(args.repeats)], "seconds")
        if "batch" in parts:
            report["batch"] = measure_batch(folder, args)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        report["machine"]["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
        report["bench_seconds"] = round(time.monotonic() - started)
        print(json.dumps(report, indent=1))


# -- memory -----------------------------------------------------------------------------------------------------
def rss_mb() -> float:
    """Resident memory of this process and all its children (the ffmpeg readers and writers), in MB."""
    import psutil

    me = psutil.Process()
    total = me.memory_info().rss
    for child in me.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return round(total / 1e6, 1)


def watch_rss(predictor: Any, folder: Path, cameras: int, minutes: float, every_s: float = 30.0) -> dict:
    samples: list[tuple[float, float]] = []

    def sample(handle: Any, streams: list) -> None:
        t0 = time.monotonic()
        while True:
            samples.append((round((time.monotonic() - t0) / 60, 2), rss_mb()))
            if handle.stop_event.wait(every_s):
                return

    result = run_watch(predictor, folder, alternate(cameras), "out-rss", seconds=minutes * 60, scenario=sample)
    at5 = next((mb for minute, mb in samples if minute >= 5), None)
    end = samples[-1][1] if samples else None
    return {"cameras": cameras, "minutes": minutes, "frames": {n: c["frames"] for n, c in result["cameras"].items()},
            "segments": {n: c["segments"] for n, c in result["cameras"].items()},
            "rss_mb_at_5_min": at5, "rss_mb_at_end": end,
            "change_from_5_min": None if not (at5 and end) else round(end / at5 - 1, 3), "samples": samples}


if __name__ == "__main__":
    main()

"""``maskdetect batch``: every video of a folder (or a glob), each exactly as ``maskdetect predict --track``
would do it, on local worker processes or on a Ray cluster, then a site report across the videos.

Per video ``<stem>``, in the output folder: ``<stem>.mp4`` (annotated), ``<stem>.json`` (detections),
``<stem>.summary.json``, ``<stem>.compliance.png``, ``<stem>.events.jsonl`` (the monitor's), and last
``<stem>.done.json`` (the input's SHA-256 and the settings). A video whose ``done.json`` matches its hash and
the settings is skipped, so a stopped batch resumes where it was. Then ``site_report.csv`` and
``site_report.html`` (a compliance chart across videos and each video's plot).

Workers: ``workers`` local processes (the default), each loading the model once; or Ray tasks
(``ray=True`` or an address), one ``Predictor`` per Ray worker process, kept between its tasks. Each video is
one ``predict_source`` call, the same function ``maskdetect predict`` runs, so results do not depend on where
it ran.

Example:
    >>> report = batch("archive/", "workspace/batch", workers=2)                    # doctest: +SKIP
"""

from __future__ import annotations

import glob
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Sequence

from maskdetect.download import sha256_file
from maskdetect.errors import ConfigError, DataError
from maskdetect.media import VIDEO_SUFFIXES

logger = logging.getLogger(__name__)

COMMAND = "batch"
REPORT_CSV, REPORT_HTML, REPORT_PLOT = "site_report.csv", "site_report.html", "site_report.png"
_OUTPUTS = (".mp4", ".json", ".summary.json", ".compliance.png", ".events.jsonl", ".done.json")


def find_videos(source: str | Path) -> list[Path]:
    """Video files directly in folder `source`, or matching the glob `source`, sorted by name.

    Raises:
        DataError: none found, or two share a stem (their outputs would collide).
    """
    text = str(source)
    if Path(text).is_dir():
        candidates = sorted(Path(text).iterdir())
    else:
        candidates = sorted(Path(p) for p in glob.glob(text, recursive=True))
    videos = [p for p in candidates if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES
              and not p.name.startswith(".")]
    if not videos:
        raise DataError(f"{source}: no video files ({', '.join(VIDEO_SUFFIXES)}); pass a folder or a glob such "
                        f"as 'archive/**/*.mp4' (quoted)")
    stems: dict[str, Path] = {}
    for video in videos:
        if video.stem in stems:
            raise DataError(f"{stems[video.stem]} and {video} share the name {video.stem!r}: their outputs would "
                            "collide; rename one or run them separately")
        stems[video.stem] = video
    return videos



def output_names(stem: str) -> list[str]:
    return [f"{stem}{suffix}" for suffix in _OUTPUTS]


def is_done(video: Path, out_dir: Path, sha256: str, settings: dict[str, Any]) -> bool:
    """The video's outputs are all there, made from this very file with these settings."""
    import json

    done = out_dir / f"{video.stem}.done.json"
    try:
        record = json.loads(done.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (record.get("sha256") == sha256 and record.get("settings") == settings
            and all((out_dir / name).is_file() for name in output_names(video.stem)[:-1]))


# -- one video (in whichever process runs it) ---------------------------------------------------------------------
_PREDICTORS: dict[str, Any] = {}


def _predictor(model: str | None, threads: int | None) -> Any:
    """This process's model, loaded once per process (a local worker or a Ray worker)."""
    key = f"{model}|{threads}"
    if key not in _PREDICTORS:
        from maskdetect.infer.predictor import Predictor

        _PREDICTORS[key] = Predictor(model, num_threads=threads)
    return _PREDICTORS[key]


def process_video(video: str, out_dir: str, sha256: str, settings: dict[str, Any],
                  threads: int | None = None) -> dict[str, Any]:
    """Run one video as ``maskdetect predict --source VIDEO --out OUT/<stem>.mp4 --json OUT/<stem>.json
    --track`` does (the model with `threads` interpreter threads), then write ``<stem>.done.json``; return its
    row of the site report."""
    from maskdetect.fileio import atomic_write_json
    from maskdetect.infer.loop import predict_source
    from maskdetect.monitor.monitor import Monitor, MonitorSettings

    video_path, out = Path(video), Path(out_dir)
    predictor = _predictor(settings["model"], threads)
    annotated, records = out / f"{video_path.stem}.mp4", out / f"{video_path.stem}.json"
    monitor = Monitor(MonitorSettings(track=True))  # what `predict --track` makes
    started = time.perf_counter()
    result = predict_source(predictor, video_path, annotated, json_path=records, monitor=monitor, progress=False)
    row = report_row(video_path.stem, result.monitor, time.perf_counter() - started, os.getpid())
    atomic_write_json(out / f"{video_path.stem}.done.json", {"video": video_path.name, "sha256": sha256,
                                                             "settings": settings, "row": row})
    return row


def report_row(stem: str, summary: dict[str, Any], seconds: float, pid: int | None = None) -> dict[str, Any]:
    """A video's line of the site report, from its monitor summary."""
    people = summary["people"]
    return {"video": stem, "frames": summary["frames"], "duration_s": summary["duration_s"],
            "people": people.get("total"), **{k: v for k, v in people.items() if k != "total"},
            "compliance_mean": summary["compliance"]["mean"], "alerts": summary["alerts"]["raised"],
            "seconds": round(seconds, 2), "worker_pid": pid}


def _ray_task() -> Any:
    import ray

    return ray.remote(num_cpus=1, max_retries=1)(process_video)


# -- the batch ------------------------------------------------------------------------------------------------
def batch(source: str | Path, out_dir: str | Path, *, model: str | None = None, workers: int = 1,
          ray: bool | str = False, progress: bool = True) -> dict[str, Any]:
    """Process every video of `source` into `out_dir` (see the module docstring) and write the site report.

    Args:
        source: a folder, or a glob of video files.
        out_dir: the output folder (files other than ours are kept; ours are replaced only if a batch wrote them).
        model: export to run (default: the bundled model).
        workers: local worker processes (ignored with `ray`).
        ray: run as Ray tasks: True for a local Ray (or the cluster of ``$RAY_ADDRESS``), or a cluster address.

    Returns:
        ``{"videos": [rows], "skipped": [stems], "report": {"csv", "html"}, "seconds"}``.
    """
    from tqdm.auto import tqdm

    from maskdetect.guard import check_new_files, check_paths, record_files

    if workers < 1:
        raise ConfigError(f"--workers {workers}: must be at least 1")
    out_dir = Path(out_dir)
    videos = find_videos(source)
    folders = {f"the folder of {v.name}": v.parent for v in videos}  # (the output may not land in an input folder)
    check_paths({f"video {v.name}": v for v in videos} | folders | {"--model": model}, {"--out": out_dir},
                folders=("--out",))
    names = [n for v in videos for n in output_names(v.stem)] + [REPORT_CSV, REPORT_HTML, REPORT_PLOT]
    check_new_files(out_dir, names, COMMAND)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = {"model": str(Path(model).resolve()) if model else None}  # what the results depend on
    # model threads per video, the same results with any count (the test proves it): a Ray task reserves one CPU
    # (`_ray_task`), so it uses one; local workers share this machine's cores
    threads = 1 if ray else max(1, (os.cpu_count() or 1) // workers)
    started = time.perf_counter()
    hashes = {v: sha256_file(v) for v in videos}
    todo = [v for v in videos if not is_done(v, out_dir, hashes[v], settings)]
    skipped = [v.stem for v in videos if v not in todo]
    if skipped:
        logger.info("skipping %d video(s) already done with the same file and settings: %s", len(skipped),
                    ", ".join(skipped[:5]))
    record_files(out_dir, names, COMMAND)  # before writing: a stopped batch may replace its own partial files
    rows: dict[str, dict[str, Any]] = {}
    bar = tqdm(total=len(todo), desc="batch", unit="video", disable=not progress or not todo)
    try:
        if ray and todo:
            import ray as ray_module

            if not ray_module.is_initialized():
                ray_module.init(address=None if ray is True else str(ray), logging_level=logging.WARNING)
            task = _ray_task()
            pending = {task.remote(str(v), str(out_dir), hashes[v], settings, threads): v for v in todo}
            while pending:
                ready, _ = ray_module.wait(list(pending), num_returns=1)
                rows[pending.pop(ready[0]).stem] = ray_module.get(ready[0])
                bar.update(1)
        elif workers > 1 and len(todo) > 1:
            import multiprocessing

            with ProcessPoolExecutor(min(workers, len(todo)), mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = {pool.submit(process_video, str(v), str(out_dir), hashes[v], settings, threads): v for v in todo}
                for future in as_completed(futures):
                    rows[futures[future].stem] = future.result()
                    bar.update(1)
        else:
            for video in todo:
                rows[video.stem] = process_video(str(video), str(out_dir), hashes[video], settings, threads)
                bar.update(1)
    finally:
        bar.close()
    for stem in skipped:
        import json

        rows[stem] = json.loads((out_dir / f"{stem}.done.json").read_text(encoding="utf-8"))["row"]
    ordered = [rows[v.stem] for v in videos]
    report = {"csv": str(out_dir / REPORT_CSV), "html": str(out_dir / REPORT_HTML), "plot": str(out_dir / REPORT_PLOT)}
    if todo or not all(Path(p).is_file() for p in report.values()):
        write_report(out_dir, ordered)
    seconds = time.perf_counter() - started
    logger.info("batch: %d video(s) processed, %d skipped in %.1f s; report %s", len(todo), len(skipped), seconds,
                report["html"])
    return {"videos": ordered, "skipped": skipped, "processed": [v.stem for v in todo], "report": report,
            "seconds": seconds}


def write_report(out_dir: Path, rows: Sequence[dict[str, Any]]) -> None:
    """``site_report.csv`` (one row per video), ``site_report.png`` (compliance and people per video) and
    ``site_report.html`` (the chart, the table, and each video's own compliance plot)."""
    import csv
    import html
    import io

    from maskdetect.fileio import atomic_path, atomic_write_text

    columns = [c for c in rows[0] if c != "worker_pid"] if rows else []
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out_dir / REPORT_CSV, buffer.getvalue())

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(max(6.0, 0.6 * len(rows) + 2), 4), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    names = [r["video"] for r in rows]
    ax.bar(names, [r["compliance_mean"] if r["compliance_mean"] is not None else 0 for r in rows], color="tab:blue")
    ax.set_ylim(0, 1)
    ax.set_ylabel("mean compliance (with mask)")
    ax.set_title("Mask compliance per video")
    people_ax = ax.twinx()
    people_ax.plot(names, [r["people"] or 0 for r in rows], "o", color="tab:red", label="people")
    people_ax.set_ylabel("people counted", color="tab:red")
    ax.tick_params(axis="x", rotation=45)
    with atomic_path(out_dir / REPORT_PLOT) as tmp:
        figure.savefig(tmp, format="png")
    cell = lambda v: "–" if v is None else (f"{v:.1%}" if isinstance(v, float) and v <= 1 else html.escape(str(v)))  # noqa: E731
    table = "".join("<tr>" + "".join(f"<td>{cell(r.get(c)) if c == 'compliance_mean' else html.escape(str(r.get(c)))}</td>"
                                     for c in columns) + "</tr>" for r in rows)
    plots = "".join(f'<figure><img src="{html.escape(r["video"])}.compliance.png" alt="compliance of '
                    f'{html.escape(r["video"])}"><figcaption>{html.escape(r["video"])}</figcaption></figure>'
                    for r in rows)
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>maskdetect site report</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ddd;
padding:.3em .6em;text-align:right}}img{{max-width:100%}}figure{{margin:1em 0}}</style></head><body>
<h1>Mask compliance across {len(rows)} video(s)</h1><img src="{REPORT_PLOT}" alt="compliance per video">
<table><tr>{"".join(f"<th>{html.escape(c)}</th>" for c in columns)}</tr>{table}</table>
<h2>Each video</h2>{plots}</body></html>
"""
    atomic_write_text(out_dir / REPORT_HTML, page)

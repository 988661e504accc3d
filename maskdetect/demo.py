"""The whole workflow on the bundled sample, end to end: what ``make demo`` / ``maskdetect demo`` runs.

prepare (VOC -> TFRecords, seeded split) -> configure -> train -> evaluate -> export SavedModel ->
make the sample video -> annotate it (H.264 MP4). Every step is a package function; this module only
chains them with demo-sized settings (input 256, batch 2, a few hundred steps: about 10 minutes on 2 cores).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

from maskdetect.errors import ConfigError
from maskdetect.fileio import atomic_write_json
from maskdetect.train.pipeline import REPO_ROOT

logger = logging.getLogger(__name__)

SAMPLE_DIR = REPO_ROOT / "sample" / "face-mask"
SAMPLE_VIDEO_IMAGE = "maksssksksss495.jpg"  # three people, one of each class
DEMO_MARKER = "demo.json"


def check_demo_options(out: str | Path, *, steps: int = 300, image_size: int = 256, batch_size: int = 2,
                       learning_rate: float = 0.002) -> None:
    """Check the demo's options before any work: the numbers, and that `out` is new, empty or an earlier demo run.

    Raises:
        ConfigError: naming the option and what is allowed.
    """
    from maskdetect.train.pipeline import check_options

    check_options(image_size=image_size, batch_size=batch_size, num_steps=steps, learning_rate=learning_rate)
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / DEMO_MARKER).exists())):
        raise ConfigError(f"--out {out}: exists and is not an earlier demo run; choose another --out")


def _fresh_run_dir(out: Path) -> None:
    """Replace an earlier demo run (checked by :func:`check_demo_options`: never a folder the demo did not make)."""
    if out.exists() and any(out.iterdir()):
        shutil.rmtree(out)


def _loss_trend(train_log: Path, steps: int, window: int = 3) -> str:
    """Mean total loss of the first and of the last `window` logged iterations (single batches are noisy)."""
    losses = [json.loads(line)["Loss/total_loss"] for line in train_log.read_text(encoding="utf-8").splitlines()]
    start, end = losses[:window], losses[-window:]
    return (f"{sum(start) / len(start):.3f} -> {sum(end) / len(end):.3f} (mean of the first and last {window} "
            f"logged iterations, {steps} steps)")


def run_demo(out: str | Path = REPO_ROOT / "workspace" / "runs" / "demo", *, steps: int = 300,
             image_size: int = 256, batch_size: int = 2, learning_rate: float = 0.002,
             progress: bool = True) -> dict[str, str]:
    """Run the demo into `out` and return ``{output name: path or figure}``."""
    from maskdetect.data import convert
    from maskdetect.train.evaluate import evaluate
    from maskdetect.train.export import export_saved_model
    from maskdetect.train.pipeline import configure
    from maskdetect.infer.loop import predict_source
    from maskdetect.infer.bundle import ExportBundle
    from maskdetect.infer.predictor import Predictor, describe_bundled_model
    from maskdetect.sample_video import make_sample_video
    from maskdetect.train.train import train

    check_demo_options(out, steps=steps, image_size=image_size, batch_size=batch_size, learning_rate=learning_rate)
    out = Path(out).resolve()
    workspace = out.parent.parent if out.parent.name == "runs" else out.parent
    timings: dict[str, float] = {}
    started = time.monotonic()

    def timed(name: str, tick: float) -> None:
        timings[name] = round(time.monotonic() - tick, 1)

    _fresh_run_dir(out)
    tick = time.monotonic()
    data_dir = workspace / "data" / "sample"
    manifest = convert("voc", SAMPLE_DIR, data_dir, split=(0.8, 0.2, 0.0), seed=0)
    timed("prepare", tick)

    paths = configure(data_dir, out, image_size=image_size, batch_size=batch_size, num_steps=steps,
                      learning_rate=learning_rate, optimizer="adam", checkpoint=None)
    atomic_write_json(out / DEMO_MARKER, {"steps": steps, "image_size": image_size, "batch_size": batch_size,
                                          "learning_rate": learning_rate})
    tick = time.monotonic()
    result = train(out, progress=progress)
    timed("train", tick)
    tick = time.monotonic()
    metrics = evaluate(out, split="val", progress=progress)
    timed("evaluate", tick)
    tick = time.monotonic()
    saved_model = export_saved_model(out)
    timed("export", tick)

    tick = time.monotonic()
    video = make_sample_video(SAMPLE_DIR / "images" / SAMPLE_VIDEO_IMAGE, workspace / "sample" / "sample.mp4")
    # drawn by the bundled model (a few minutes of demo training prove the path, not accuracy: its boxes would
    # mislead a newcomer), with its second stage
    predictor = Predictor(None, threshold=0.3)  # its close-up faces are larger than most it was trained on
    annotated = out / "annotated_sample.mp4"
    detections_json = out / "annotated_sample.json"
    predict_source(predictor, video, annotated, json_path=detections_json, progress=progress)
    timed("video", tick)
    timings["total"] = round(time.monotonic() - started, 1)

    outputs = {
        "data (TFRecords)": str(data_dir),
        "data manifest": str(data_dir / "manifest.json"),
        "run directory": str(out),
        "as-run pipeline.config": str(paths.pipeline_config),
        "training log": str(paths.train_log),
        "loss start -> end": _loss_trend(paths.train_log, result.final_step),
        "metrics JSON": metrics["path"],
        "val mAP@0.5": f"{metrics['mAP@0.5']}",
        "PR curves": metrics["plots"]["pr_curves"],
        "confusion matrix": metrics["plots"]["confusion_matrix"],
        "SavedModel": str(saved_model),
        "model card": str(ExportBundle.open(saved_model).card_path),
        "sample video": str(video),
        "annotated video": str(annotated),
        "drawn by": f"the bundled model at score >= 0.3, {describe_bundled_model(predictor.model_path)}"
                    + (f" + {predictor.classifier.path.name}" if predictor.classifier else ""),
        "detections JSON": str(detections_json),
        "timings (s)": json.dumps(timings),
    }
    atomic_write_json(out / DEMO_MARKER, {"steps": steps, "image_size": image_size, "batch_size": batch_size,
                                          "learning_rate": learning_rate, "outputs": outputs,
                                          "images": manifest.counts})
    return outputs

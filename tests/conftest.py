"""Shared fixtures. The TensorFlow ones train, export and run the real OD API, tiny (input 256, a few steps),
once per test session."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import maskdetect  # noqa: F401  (the OD API compatibility layer goes first)

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample" / "face-mask"
TINY_SIZE = 256  # also the smallest input SSD EfficientDet-D0 accepts (>= 129 and divisible by 2**7)
TINY_STEPS = 6
# The tiny run, and the tests of the training loop itself (resume, strategies, NaN, the notebook's workflow), use
# the bundled model's architecture: it traces and converts faster than D0 (the tiny run's train + SavedModel +
# three TFLite precisions, each in one process, quiet machine: 333 s vs 519 s). D0, the default for a GPU, is
# trained, exported (SavedModel and TFLite, letterboxed) and run in test_colab_install, on Colab's versions.
LOOP_MODEL = "ssd_mobilenet_v2_fpnlite_320"

sys.path.insert(0, str(REPO / "bench"))  # bench_colab_install: the Colab stand-in, shared with its test


def run_cli(*args: str, timeout: float = 900, **kwargs):
    """Run ``python -m maskdetect ARGS`` in a fresh process (fresh TensorFlow state)."""
    import subprocess

    env = {**os.environ, "PYTHONUNBUFFERED": "1", **kwargs.pop("env", {})}
    return subprocess.run([sys.executable, "-m", "maskdetect", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=REPO, **kwargs)


# Tests that use the session's tiny model run on one pytest-xdist worker (`make test` runs two), so the model is
# trained and exported once; the others are spread over both workers.
TINY_FIXTURES = {"tiny_run", "tiny_export", "saved", "lite"}


def pytest_itemcollected(item):
    """The tiny model's tests are slow (its training and exports take minutes: `make test-fast` leaves them to
    `make test`), and run in one xdist group. xdist 3.8 marks a group by appending ``@group`` to the node id
    through ``item._nodeid``, which pytest 9 no longer reads (it keeps ``item._id``): do it here instead."""
    if not TINY_FIXTURES & set(getattr(item, "fixturenames", ())):
        return
    item.add_marker(pytest.mark.slow)
    if getattr(item.config.option, "loadgroup", False):
        from _pytest.nodeid import coerce_node_id

        item._id = coerce_node_id(f"{item.nodeid}@tiny")


@pytest.fixture(autouse=True)
def _restore_third_party_log_levels():
    """The CLI quiets urllib3/requests/absl for the whole process; tests that call it in-process must not
    change what the next test's loggers show."""
    import logging

    from maskdetect.redact import THIRD_PARTY_LOGGERS

    levels = {name: logging.getLogger(name).level for name in THIRD_PARTY_LOGGERS}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def missing_detections(a, b, *, box_px: float, score: float) -> list[int]:
    """Indices of the detections of `a` that `b` lacks: none of b's has the same class, every box coordinate
    within `box_px` pixels and the score within `score`. (Coordinates, not IoU: an untrained model's boxes can
    be flat, clipped at the border, and a flat box has no IoU even with itself.)"""
    import numpy as np

    close = (np.abs(a.xyxy[:, None, :] - b.xyxy[None, :, :]).max(axis=2) <= box_px) \
        & (a.class_id[:, None] == b.class_id[None, :]) \
        & (np.abs(a.confidence[:, None] - b.confidence[None, :]) <= score)
    return [int(i) for i in np.flatnonzero(~close.any(axis=1))]


@dataclass
class TinyExport:
    run_dir: Path
    saved_model: Path
    tflite: Path | None
    label_map: Path
    quantized: dict[str, Path]  # "fp16", "int8" -> model-fp16.tflite, model-int8.tflite


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory) -> Path:
    """The bundled sample converted to TFRecords (train 80%, val 20%)."""
    from maskdetect.data import convert

    out = tmp_path_factory.mktemp("data") / "sample"
    convert("voc", SAMPLE, out, split=(0.8, 0.2, 0.0), seed=0)
    return out


def tiny_configure(data: Path, run_dir: Path, *, steps: int = TINY_STEPS, model: str = LOOP_MODEL, **kwargs):
    from maskdetect.train.pipeline import configure

    kwargs.setdefault("learning_rate", 0.01)
    return configure(data, run_dir, model, image_size=TINY_SIZE, batch_size=2, num_steps=steps, **kwargs)


@pytest.fixture(scope="session")
def tiny_run(sample_data, tmp_path_factory):
    """A run directory trained for a few steps from scratch, in this process (BatchNorm recalibrated on 8
    batches: test_learning checks the statistics)."""
    from maskdetect.train.train import train

    paths = tiny_configure(sample_data, tmp_path_factory.mktemp("runs") / "tiny")
    result = train(paths.run_dir, steps_per_iteration=3, recalibration_batches=8, progress=False)
    return paths, result


@pytest.fixture(scope="session")
def tiny_export(tiny_run) -> TinyExport:
    """The tiny run exported as a SavedModel and as TFLite (``.tflite`` with ``tflite_input.json``) in float32,
    float16 and int8 (calibrated on 8 training images)."""
    from maskdetect.train.export import export_saved_model, export_tflite_precisions

    paths, _ = tiny_run
    saved_model = export_saved_model(paths.run_dir)
    tflites = export_tflite_precisions(paths.run_dir, ("none", "fp16", "int8"), calibration_count=8)
    return TinyExport(run_dir=paths.run_dir, saved_model=saved_model, tflite=tflites.pop("none"),
                      label_map=paths.exports / "label_map.pbtxt", quantized=tflites)


@pytest.fixture(scope="session")
def saved(tiny_export):
    """The tiny SavedModel, loaded once (no score threshold)."""
    from maskdetect.infer.predictor import Predictor

    return Predictor(tiny_export.saved_model, threshold=0.0)


@pytest.fixture(scope="session")
def lite(tiny_export):
    """The tiny TFLite model, loaded once (no score threshold)."""
    from maskdetect.infer.predictor import Predictor

    return Predictor(tiny_export.tflite, threshold=0.0)

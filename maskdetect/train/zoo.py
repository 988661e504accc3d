"""The models we configure, and their COCO-pretrained checkpoints from the TF2 Detection Model Zoo: registry,
download, cache, extraction.

Archives are cached under ``workspace/pretrained/<name>/`` (``checkpoint/ckpt-0.*``, ``pipeline.config``).
Offline there is no silent fallback: :func:`fetch_checkpoint` raises a :class:`DownloadError` that tells the
user to connect, to pass a local archive, or to choose ``--from-scratch`` explicitly.
"""

from __future__ import annotations

import json
import logging
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maskdetect.download import download, safe_extract, sha256_file
from maskdetect.errors import DownloadError
from maskdetect.fileio import atomic_write_json
from maskdetect.redact import redact_url

logger = logging.getLogger(__name__)

ZOO_BASE_URL = os.environ.get("MASKDETECT_ZOO_URL", "http://download.tensorflow.org/models/object_detection/tf2/20200711")
CACHE_DIR = Path("workspace") / "pretrained"  # under the working folder, beside the runs the README puts there
RECORD = "maskdetect_download.json"


@dataclass(frozen=True)
class ModelSpec:
    """A model we know how to configure: its template, input size, COCO checkpoint in the TF2 model zoo, and
    whether ImageNet weights exist here for its backbone (``configure --backbone-weights``)."""

    template: str
    image_size: int
    zoo_archive: str
    overrides: dict[str, Any] = field(default_factory=dict)
    imagenet_backbone: bool = False


MODELS: dict[str, ModelSpec] = {
    "ssd_efficientdet_d0_512": ModelSpec("ssd_efficientdet_d0_512.config", 512, "efficientdet_d0_coco17_tpu-32"),
    "efficientdet_d1_640": ModelSpec(
        "ssd_efficientdet_d0_512.config", 640, "efficientdet_d1_coco17_tpu-32",
        {
            "model.ssd.feature_extractor.type": "ssd_efficientnet-b1_bifpn_keras",
            "model.ssd.feature_extractor.bifpn.num_filters": 88,
            "model.ssd.feature_extractor.bifpn.num_iterations": 4,
            "model.ssd.box_predictor.weight_shared_convolutional_box_predictor.depth": 88,
        },
    ),
    "ssd_mobilenet_v2_fpnlite_320": ModelSpec(
        "ssd_mobilenet_v2_fpnlite.config", 320, "ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8",
        imagenet_backbone=True),
    "ssd_mobilenet_v2_fpnlite_640": ModelSpec(
        "ssd_mobilenet_v2_fpnlite.config", 640, "ssd_mobilenet_v2_fpnlite_640x640_coco17_tpu-8",
        imagenet_backbone=True),
}
DEFAULT_MODEL = "ssd_efficientdet_d0_512"


def archive_url(archive_name: str, base_url: str | None = None) -> str:
    return f"{(base_url or ZOO_BASE_URL).rstrip('/')}/{archive_name}.tar.gz"


def checkpoint_prefix(directory: Path) -> Path:
    """``<directory>/checkpoint/ckpt-0`` after checking the extracted layout."""
    prefix = directory / "checkpoint" / "ckpt-0"
    if not Path(f"{prefix}.index").exists():
        raise DownloadError(f"{directory}: no checkpoint/ckpt-0.index; the archive is not in the model zoo's "
                            "layout (<name>/checkpoint/ckpt-0.*, <name>/pipeline.config). Delete it and retry.")
    return prefix


def _check_archive(path: Path, name: str) -> None:
    """Integrity: a readable gzip tar holding ``<name>/checkpoint/ckpt-0.index`` and ``.data-*``."""
    try:
        with tarfile.open(path) as tar:
            members = set(tar.getnames())
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DownloadError(f"{path}: corrupt or truncated archive ({exc}); delete it and download again") from exc
    needed = f"{name}/checkpoint/ckpt-0.index"
    if needed not in members or not any(m.startswith(f"{name}/checkpoint/ckpt-0.data-") for m in members):
        raise DownloadError(f"{path}: archive lacks {needed} and its data shards; is it a model-zoo archive?")


def fetch_checkpoint(model: str, *, cache_dir: str | Path | None = None, base_url: str | None = None,
                     sha256: str | None = None) -> Path:
    """Download (with progress and resume), verify and extract `model`'s COCO checkpoint; return the
    checkpoint prefix (``.../checkpoint/ckpt-0``) for ``configure(checkpoint=...)``. Cached after the first call
    in `cache_dir` (default: ``workspace/pretrained`` under the working folder).

    Raises:
        DownloadError: offline or a bad archive; the message names the fix (``--from-scratch`` among them).
    """
    if model not in MODELS:
        raise DownloadError(f"unknown model {model!r}; the zoo registry has {', '.join(MODELS)}")
    name = MODELS[model].zoo_archive
    cache = Path(cache_dir or CACHE_DIR)
    target = cache / name
    if (target / "checkpoint" / "ckpt-0.index").exists() and _extracted_from(target, sha256):
        return checkpoint_prefix(target)
    archive = cache / f"{name}.tar.gz"
    url = archive_url(name, base_url)
    try:
        download(url, archive, sha256=sha256, desc=name)
    except DownloadError as exc:
        raise DownloadError(
            f"{exc}\nThe COCO checkpoint {name} could not be downloaded. Connect to the internet, or put the "
            f"archive at {archive}, or train without it by passing --from-scratch (much lower accuracy).") from exc
    _check_archive(archive, name)
    safe_extract(archive, cache, only=name)  # it may write its own folder only, never another checkpoint
    atomic_write_json(target / RECORD, {"url": redact_url(url), "archive_sha256": sha256_file(archive)})
    return checkpoint_prefix(target)


def _extracted_from(target: Path, sha256: str | None) -> bool:
    """Whether the cached checkpoint may serve a request for the archive `sha256` (any, if None)."""
    if sha256 is None:
        return True
    try:
        return json.loads((target / RECORD).read_text())["archive_sha256"] == sha256.lower()
    except (OSError, ValueError, KeyError, TypeError):
        return False

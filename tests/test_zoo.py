"""Model-zoo checkpoints: download with progress and resume, integrity check, cache, safe extraction, offline
message; served from a loopback HTTP server as an archive in the zoo's layout built in the test."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from data_fixtures import serve
from maskdetect.errors import DownloadError
from maskdetect.train.pipeline import MODELS
from maskdetect.train.zoo import archive_url, fetch_checkpoint

NAME = MODELS["ssd_efficientdet_d0_512"].zoo_archive


def zoo_archive(checkpoint_prefix: str | None, pipeline_config: Path | None = None, *, name: str = NAME) -> bytes:
    """A tar.gz like the zoo's: ``<name>/checkpoint/ckpt-0.*``, ``<name>/pipeline.config``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        if checkpoint_prefix:
            for part in Path(checkpoint_prefix).parent.glob(Path(checkpoint_prefix).name + ".*"):
                tar.add(part, arcname=f"{name}/checkpoint/ckpt-0{part.name[len(Path(checkpoint_prefix).name):]}")
        if pipeline_config:
            tar.add(pipeline_config, arcname=f"{name}/pipeline.config")
    return buffer.getvalue()


def fake_checkpoint(tmp_path: Path) -> str:
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "ckpt-7.index").write_bytes(b"index")
    (tmp_path / "ck" / "ckpt-7.data-00000-of-00001").write_bytes(os.urandom(400_000))  # incompressible
    return str(tmp_path / "ck" / "ckpt-7")


def test_download_extract_and_cache(tmp_path):
    body = zoo_archive(fake_checkpoint(tmp_path))
    with serve({f"/zoo/{NAME}.tar.gz": body}) as server:
        prefix = fetch_checkpoint("ssd_efficientdet_d0_512", cache_dir=tmp_path / "cache", base_url=server.url("/zoo"))
        assert prefix == tmp_path / "cache" / NAME / "checkpoint" / "ckpt-0"
        assert (tmp_path / "cache" / NAME / "checkpoint" / "ckpt-0.data-00000-of-00001").stat().st_size == 400_000
        assert len(server.requests) == 1
        again = fetch_checkpoint("ssd_efficientdet_d0_512", cache_dir=tmp_path / "cache", base_url=server.url("/zoo"))
        assert again == prefix and len(server.requests) == 1  # cached


def test_interrupted_download_resumes(tmp_path):
    body = zoo_archive(fake_checkpoint(tmp_path))
    with serve({f"/{NAME}.tar.gz": body}) as server:
        server.cut_after = len(body) // 2  # the connection drops half-way once
        prefix = fetch_checkpoint("ssd_efficientdet_d0_512", cache_dir=tmp_path / "c", base_url=server.url(""))
        assert Path(f"{prefix}.data-00000-of-00001").stat().st_size == 400_000
        assert len(server.requests) == 2 and server.requests[1]["headers"].get("Range", "").startswith("bytes=")


def test_wrong_layout_and_checksum_refused(tmp_path):
    with serve({f"/{NAME}.tar.gz": zoo_archive(None)}) as server:
        with pytest.raises(DownloadError, match="lacks .*ckpt-0.index"):
            fetch_checkpoint("ssd_efficientdet_d0_512", cache_dir=tmp_path / "a", base_url=server.url(""))
    body = zoo_archive(fake_checkpoint(tmp_path))
    with serve({f"/{NAME}.tar.gz": body}) as server:
        with pytest.raises(DownloadError):
            fetch_checkpoint("ssd_efficientdet_d0_512", cache_dir=tmp_path / "b", base_url=server.url(""),
                             sha256="0" * 64)
        assert not list((tmp_path / "b").glob(f"{NAME}/checkpoint/*"))


def test_offline_names_the_explicit_choice(tmp_path):
    with pytest.raises(DownloadError, match="--from-scratch"):
        fetch_checkpoint("ssd_efficientdet_d0_512", cache_dir=tmp_path, base_url="http://127.0.0.1:9")


def test_registry_addresses():
    for model, spec in MODELS.items():
        url = archive_url(spec.zoo_archive)
        assert url.endswith(f"/{spec.zoo_archive}.tar.gz") and url.startswith("http")
    assert {"ssd_efficientdet_d0_512", "efficientdet_d1_640", "ssd_mobilenet_v2_fpnlite_320",
            "ssd_mobilenet_v2_fpnlite_640"} <= MODELS.keys()

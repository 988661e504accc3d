"""maskdetect.datasets (the Kaggle set through kagglehub, uploaded VOC/YOLO zips, Colab's file picker) and
maskdetect.plan (steps from the data's size). Kaggle and Colab are stand-ins here: a fake ``kagglehub`` module
that checks the token it is given, a fake ``google.colab``."""

from __future__ import annotations

import sys
import types
import zipfile
from pathlib import Path

import pytest

from data_fixtures import SAMPLE, copy_voc, voc_to_yolo
from maskdetect import datasets
from maskdetect.errors import ConfigError, DataError, DownloadError
from maskdetect.plan import MAX_STEPS, MIN_STEPS, plan_training

STEMS = ["maksssksksss104", "maksssksksss13"]


def zip_folder(folder: Path, archive: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                z.write(path, prefix + path.relative_to(folder).as_posix())
    return archive


@pytest.fixture
def fake_colab(monkeypatch):
    """``google.colab`` with a secret store and a file picker (returns what the test puts in ``uploads``)."""
    store: dict[str, str] = {}
    uploads: dict[str, bytes] = {}
    colab = types.ModuleType("google.colab")
    colab.userdata = types.SimpleNamespace(get=lambda name: store[name] if name in store else
                                           (_ for _ in ()).throw(KeyError(name)))  # Colab raises when absent
    colab.files = types.SimpleNamespace(upload=lambda: dict(uploads))
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    for name in datasets.KAGGLE_SECRETS:
        monkeypatch.delenv(name, raising=False)
    return types.SimpleNamespace(secrets=store, uploads=uploads)


@pytest.fixture
def fake_kagglehub(monkeypatch, tmp_path):
    """A kagglehub whose dataset_download needs the token in the environment, as the real one reads it."""
    calls = []
    folder = copy_voc(tmp_path / "kaggle-cache", STEMS)

    def dataset_download(handle):
        import os

        calls.append(handle)
        if os.environ.get("KAGGLE_KEY") != "k3y-s3cret":
            raise RuntimeError(f"401 Unauthorized for https://www.kaggle.com/api/v1/datasets/{handle}?key=k3y")
        return str(folder)

    monkeypatch.setitem(sys.modules, "kagglehub", types.SimpleNamespace(dataset_download=dataset_download))
    return types.SimpleNamespace(calls=calls, folder=folder)


def test_kaggle_download_takes_the_token_from_colab_secrets(fake_colab, fake_kagglehub, monkeypatch):
    fake_colab.secrets.update(KAGGLE_USERNAME="someone", KAGGLE_KEY="k3y-s3cret")
    assert datasets.download_kaggle() == fake_kagglehub.folder
    assert fake_kagglehub.calls == ["andrewmvd/face-mask-detection"]
    assert datasets.detect_format(fake_kagglehub.folder) == "voc"


def test_kaggle_without_a_token_says_where_to_put_one(fake_colab, fake_kagglehub):
    with pytest.raises(ConfigError, match="KAGGLE_USERNAME and KAGGLE_KEY"):
        datasets.download_kaggle()
    assert fake_kagglehub.calls == []


def test_a_refused_kaggle_download_hides_the_key(fake_colab, fake_kagglehub, monkeypatch):
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", "wrong")
    with pytest.raises(DownloadError, match="401") as caught:
        datasets.download_kaggle()
    assert "key=k3y" not in str(caught.value)


def test_no_kagglehub_names_the_pip_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "kagglehub", None)
    with pytest.raises(ConfigError, match="pip install kagglehub"):
        datasets.download_kaggle()


@pytest.mark.parametrize("kind, prefix", [("voc", ""), ("yolo", "my-set/")])
def test_unpack_zip_detects_the_format_and_reuses_the_same_zip(tmp_path, kind, prefix):
    voc = copy_voc(tmp_path / "voc", STEMS)
    folder = voc if kind == "voc" else voc_to_yolo(voc, tmp_path / "yolo")
    archive = zip_folder(folder, tmp_path / "masks.zip", prefix)
    fmt, root = datasets.unpack_zip(archive, tmp_path / "uploads")
    assert fmt == kind
    assert (root / ("annotations" if kind == "voc" else "classes.txt")).exists()
    assert datasets.unpack_zip(archive, tmp_path / "uploads") == (fmt, root)  # a second run reuses it
    assert len(list((tmp_path / "uploads").iterdir())) == 1


def test_unpack_zip_refuses_what_is_neither_format(tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="neither Pascal VOC"):
        datasets.unpack_zip(zip_folder(tmp_path / "junk", tmp_path / "junk.zip"), tmp_path / "uploads")


def test_upload_file_saves_the_one_chosen_file(fake_colab, tmp_path):
    fake_colab.uploads.update({"clip.mp4": b"\x00\x01", "notes.txt": b"x"})
    saved = datasets.upload_file(tmp_path / "up", suffixes=(".mp4",))
    assert saved == tmp_path / "up" / "clip.mp4" and saved.read_bytes() == b"\x00\x01"
    fake_colab.uploads.clear()
    with pytest.raises(DataError, match="upload one file ending in .zip"):
        datasets.upload_file(tmp_path / "up")


# -- plan ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("images, batch, steps", [(580, 16, 5982), (25, 16, 258), (5000, 16, MAX_STEPS),
                                                  (3, 16, MIN_STEPS)])
def test_steps_follow_the_data_size(images, batch, steps):
    plan = plan_training(images, batch_size=batch)
    assert plan.steps == steps
    assert plan.epochs == pytest.approx(steps * batch / images, abs=0.1)


def test_the_expected_time_scales_with_steps_and_says_what_it_is():
    gpu, cpu = plan_training(580, batch_size=16), plan_training(580, batch_size=16, gpu=False)
    assert gpu.upper_bound and "upper bound" in gpu.describe() and "T4" in gpu.describe()
    assert "2-core CPU" in cpu.describe() and cpu.seconds > gpu.seconds
    small = plan_training(580, batch_size=16, model="ssd_mobilenet_v2_fpnlite_320")
    assert small.seconds < gpu.seconds  # a smaller model at a smaller input
    with pytest.raises(ValueError):
        plan_training(0, batch_size=16)


def test_the_sample_is_a_voc_set():
    assert datasets.detect_format(SAMPLE) == "voc"

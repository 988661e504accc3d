"""Roboflow downloads: export links through a loopback server, the package route through a fake `roboflow`."""

from __future__ import annotations

import io
import logging
import sys
import types
import zipfile

import pytest

from data_fixtures import serve
from maskdetect.cli import main as cli_main
from maskdetect.data import convert, download_roboflow, inspect
from maskdetect.errors import ConfigError, DownloadError

KEY = "rf_S3CRETkeyVALUE42"
LINK_KEY = "LinkK3ySecret99"
LABEL_MAP = 'item {\n  name: "with_mask",\n  id: 1\n}\nitem {\n  name: "without_mask",\n  id: 2\n}\n'


def _example(seed: int) -> bytes:
    import tensorflow as tf
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (seed * 40 % 255, 90, 160)).save(buf, format="JPEG")
    f = {
        "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[buf.getvalue()])),
        "image/format": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"jpeg"])),
        "image/filename": tf.train.Feature(bytes_list=tf.train.BytesList(value=[f"im{seed}.jpg".encode()])),
        "image/height": tf.train.Feature(int64_list=tf.train.Int64List(value=[48])),
        "image/width": tf.train.Feature(int64_list=tf.train.Int64List(value=[64])),
        "image/object/bbox/xmin": tf.train.Feature(float_list=tf.train.FloatList(value=[0.1, 0.5])),
        "image/object/bbox/xmax": tf.train.Feature(float_list=tf.train.FloatList(value=[0.3, 0.9])),
        "image/object/bbox/ymin": tf.train.Feature(float_list=tf.train.FloatList(value=[0.2, 0.1])),
        "image/object/bbox/ymax": tf.train.Feature(float_list=tf.train.FloatList(value=[0.6, 0.5])),
        "image/object/class/text": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"with_mask",
                                                                                         b"without_mask"])),
        "image/object/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[1, 2])),
    }
    return tf.train.Example(features=tf.train.Features(feature=f)).SerializeToString()


def _tfrecord_bytes(records: list[bytes], tmp_path) -> bytes:
    import tensorflow as tf

    path = tmp_path / "tmp.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as w:
        for r in records:
            w.write(r)
    data = path.read_bytes()
    path.unlink()
    return data


def roboflow_zip(tmp_path, extra: dict[str, bytes] | None = None) -> bytes:
    """A zip in Roboflow's TFRecord export layout."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("README.roboflow.txt", "exported from roboflow")
        for k, split in enumerate(("train", "valid", "test")):
            n = {"train": 6, "valid": 2, "test": 2}[split]
            zf.writestr(f"{split}/face-masks.tfrecord",
                        _tfrecord_bytes([_example(10 * k + i) for i in range(n)], tmp_path))
            zf.writestr(f"{split}/face-masks_label_map.pbtxt", LABEL_MAP)
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_download_export_link(tmp_path, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    with serve({"/ds/AbCd": roboflow_zip(tmp_path)}) as srv:
        url = srv.url(f"/ds/AbCd?key={LINK_KEY}")
        assert cli_main(["-v", "data", "download", "roboflow", "--url", url, "--out", str(tmp_path / "rf")]) == 0
    captured = capsys.readouterr()
    for text in (captured.out, captured.err, caplog.text):
        assert LINK_KEY not in text
    out = tmp_path / "rf"
    assert sorted(p.name for p in out.iterdir()) == ["README.roboflow.txt", "test", "train", "valid"]
    assert not list(tmp_path.glob(".rf*"))  # the zip and partial files are gone
    report = inspect(out)
    assert report["valid_records"] == 10 and set(report["splits"]) == {"train", "val", "test"}
    m = convert("tfrecord", out, tmp_path / "data", split="keep")
    assert {s: m.counts[s]["images"] for s in ("train", "val", "test")} == {"train": 6, "val": 2, "test": 2}
    assert m.classes == ["with_mask", "without_mask"]


def test_download_link_resumes_after_drop(tmp_path):
    import os

    data = roboflow_zip(tmp_path, {"train/noise.bin": os.urandom(400_000)})  # bigger than a read chunk
    with serve({"/ds/x": data}) as srv:
        srv.cut_after = len(data) // 3
        download_roboflow(tmp_path / "rf", url=srv.url(f"/ds/x?key={LINK_KEY}"))
        assert "Range" in srv.requests[-1]["headers"], srv.requests
    assert (tmp_path / "rf" / "train" / "face-masks.tfrecord").is_file()


def test_download_link_rejects_path_escape(tmp_path):
    with serve({"/ds/x": roboflow_zip(tmp_path, {"../escape.txt": b"x"})}) as srv:
        with pytest.raises(DownloadError, match="outside the target folder"):
            download_roboflow(tmp_path / "rf", url=srv.url(f"/ds/x?key={LINK_KEY}"))
    assert not (tmp_path / "rf").exists() and not list(tmp_path.rglob("escape.txt"))


def test_download_link_without_tfrecords(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("train/_annotations.coco.json", "{}")
    with serve({"/ds/x": buf.getvalue()}) as srv:
        with pytest.raises(Exception, match="no \\*.tfrecord file.*TFRecord"):
            download_roboflow(tmp_path / "rf", url=srv.url(f"/ds/x?key={LINK_KEY}"))
    assert not (tmp_path / "rf").exists()


def test_download_link_http_error_hides_key(tmp_path):
    with serve({}) as srv:
        with pytest.raises(DownloadError) as err:
            download_roboflow(tmp_path / "rf", url=srv.url(f"/ds/x?key={LINK_KEY}"))
    assert "404" in str(err.value) and LINK_KEY not in str(err.value)


# --------------------------------------------------------------------------- the roboflow package route
class FakeRoboflow:
    """Records the calls; writes a Roboflow-layout export into the location it is given."""

    calls: list = []
    fail_with: Exception | None = None
    zip_bytes: bytes = b""

    def __init__(self, api_key=None, **kwargs):
        FakeRoboflow.calls.append(("Roboflow", api_key))
        print(f"loading Roboflow workspace... https://api.roboflow.com/?api_key={api_key}")

    def workspace(self, name):
        FakeRoboflow.calls.append(("workspace", name))
        return self

    def project(self, name):
        FakeRoboflow.calls.append(("project", name))
        return self

    def version(self, number):
        FakeRoboflow.calls.append(("version", number))
        return self

    def download(self, model_format, location=None, overwrite=False):
        FakeRoboflow.calls.append(("download", model_format, location, overwrite))
        logging.getLogger("roboflow.core.version").info("GET https://api.roboflow.com/x?api_key=%s", KEY)
        if FakeRoboflow.fail_with is not None:
            raise FakeRoboflow.fail_with
        with zipfile.ZipFile(io.BytesIO(FakeRoboflow.zip_bytes)) as zf:
            zf.extractall(location)


@pytest.fixture()
def fake_roboflow(monkeypatch, tmp_path):
    module = types.ModuleType("roboflow")
    module.Roboflow = FakeRoboflow
    FakeRoboflow.calls = []
    FakeRoboflow.fail_with = None
    FakeRoboflow.zip_bytes = roboflow_zip(tmp_path)
    monkeypatch.setitem(sys.modules, "roboflow", module)
    monkeypatch.setenv("ROBOFLOW_API_KEY", KEY)
    return FakeRoboflow


def test_package_route_passes_the_right_arguments(fake_roboflow, tmp_path, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    assert cli_main(["-v", "data", "download", "roboflow", "--workspace", "ws", "--project", "masks",
                     "--version", "3", "--out", str(tmp_path / "rf")]) == 0
    calls = fake_roboflow.calls
    assert calls[:4] == [("Roboflow", KEY), ("workspace", "ws"), ("project", "masks"), ("version", 3)]
    assert calls[4][0] == "download" and calls[4][1] == "tfrecord" and calls[4][3] is True
    captured = capsys.readouterr()
    for text in (captured.out, captured.err, caplog.text):
        assert KEY not in text
    assert "api_key=***" in caplog.text  # the package's own output was kept, redacted
    assert (tmp_path / "rf" / "train" / "face-masks.tfrecord").is_file()


def test_package_route_errors_hide_the_key(fake_roboflow, tmp_path, capsys):
    fake_roboflow.fail_with = RuntimeError(f"401 Unauthorized for url https://api.roboflow.com/ws?api_key={KEY}")
    with pytest.raises(DownloadError) as err:
        download_roboflow(tmp_path / "rf", workspace="ws", project="masks", version=3)
    assert KEY not in str(err.value) and "401" in str(err.value)
    assert err.value.__cause__ is None and err.value.__context__ is None
    assert not (tmp_path / "rf").exists()
    assert cli_main(["data", "download", "roboflow", "--workspace", "ws", "--project", "masks", "--version", "3",
                     "--out", str(tmp_path / "rf")]) == 2
    assert KEY not in capsys.readouterr().err


def test_key_comes_from_colab_secret_store(fake_roboflow, monkeypatch, tmp_path):
    monkeypatch.delenv("ROBOFLOW_API_KEY")
    userdata = types.SimpleNamespace(get=lambda name: KEY if name == "ROBOFLOW_API_KEY" else None)
    colab = types.ModuleType("google.colab")
    colab.userdata = userdata
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setitem(sys.modules, "google.colab.userdata", userdata)
    download_roboflow(tmp_path / "rf", workspace="ws", project="masks", version="3")
    assert fake_roboflow.calls[0] == ("Roboflow", KEY)


def test_missing_key_and_bad_options(fake_roboflow, monkeypatch, tmp_path):
    monkeypatch.delenv("ROBOFLOW_API_KEY")
    with pytest.raises(ConfigError, match="ROBOFLOW_API_KEY"):
        download_roboflow(tmp_path / "rf", workspace="ws", project="masks", version=3)
    with pytest.raises(ConfigError, match="either --url"):
        download_roboflow(tmp_path / "rf", workspace="ws")
    with pytest.raises(ConfigError, match="either --url"):
        download_roboflow(tmp_path / "rf", url="http://x/y", workspace="ws", project="p", version=1)
    with pytest.raises(SystemExit):  # there is no --api-key option
        cli_main(["data", "download", "roboflow", "--api-key", KEY, "--out", str(tmp_path / "rf")])


def test_a_stale_zip_or_a_refused_archive_never_serves_another_url(tmp_path):
    """A hidden .rf.zip left by a killed run (no record of its URL) and an archive refused for its layout are
    not reused for a different --url: the new URL is requested and its data installed."""
    good = roboflow_zip(tmp_path)
    wrong = io.BytesIO()
    with zipfile.ZipFile(wrong, "w") as zf:
        zf.writestr("images/a.jpg", b"not a tfrecord export")
    (tmp_path / ".rf.zip").write_bytes(wrong.getvalue())  # killed after the download, before extraction
    with serve({"/ds/good": good, "/ds/wrong": wrong.getvalue()}) as srv:
        assert download_roboflow(tmp_path / "rf", url=srv.url(f"/ds/good?key={LINK_KEY}")) == tmp_path / "rf"
        assert [r["path"].split("?")[0] for r in srv.requests] == ["/ds/good"]
        assert inspect(tmp_path / "rf")["valid_records"] == 10
        with pytest.raises(Exception, match="no \\*.tfrecord"):
            download_roboflow(tmp_path / "rf2", url=srv.url(f"/ds/wrong?key={LINK_KEY}"))
        assert not (tmp_path / "rf2").exists()
        download_roboflow(tmp_path / "rf2", url=srv.url(f"/ds/good?key={LINK_KEY}"))  # the corrected URL
        assert [r["path"].split("?")[0] for r in srv.requests][-1] == "/ds/good"
    assert inspect(tmp_path / "rf2")["valid_records"] == 10
    assert not list(tmp_path.glob(".rf*"))

"""maskdetect.download: resume, integrity, redaction, offline errors, safe extraction (loopback server only)."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import socket
import tarfile
import zipfile

import pytest

from data_fixtures import serve
from maskdetect.download import download, safe_extract, url_key
from maskdetect.errors import DownloadError

BODY = os.urandom(300_000)
SHA = hashlib.sha256(BODY).hexdigest()
SECRET = "S3cr3tK3yValue"


def test_download_whole_file(tmp_path):
    with serve({"/f.bin": BODY}) as srv:
        out = download(srv.url("/f.bin"), tmp_path / "f.bin", sha256=SHA)
    assert out.read_bytes() == BODY
    assert not list(tmp_path.glob("*.partial*"))


def test_download_resumes_after_connection_drop(tmp_path):
    with serve({"/f.bin": BODY}) as srv:
        srv.cut_after = 100_000
        out = download(srv.url("/f.bin"), tmp_path / "f.bin", sha256=SHA)
        assert srv.requests[-1]["headers"].get("Range", "").startswith("bytes=")
        assert int(srv.requests[-1]["headers"]["Range"][6:-1]) > 0
    assert out.read_bytes() == BODY


def test_download_resumes_partial_left_by_previous_run(tmp_path):
    (tmp_path / "f.bin.partial").write_bytes(BODY[:12345])
    with serve({"/f.bin": BODY}) as srv:
        (tmp_path / "f.bin.partial.json").write_text(json.dumps({"url_sha256": url_key(srv.url("/f.bin"))}))
        download(srv.url("/f.bin"), tmp_path / "f.bin", sha256=SHA)
        assert srv.requests[0]["headers"]["Range"] == "bytes=12345-"
    assert (tmp_path / "f.bin").read_bytes() == BODY


def test_download_restarts_when_remote_file_changed(tmp_path):
    (tmp_path / "f.bin.partial").write_bytes(b"x" * 5000)
    with serve({"/f.bin": BODY}) as srv:
        meta = {"etag": '"old"', "url_sha256": url_key(srv.url("/f.bin"))}
        (tmp_path / "f.bin.partial.json").write_text(json.dumps(meta))
        download(srv.url("/f.bin"), tmp_path / "f.bin", sha256=SHA)
        assert srv.requests[0]["headers"]["If-Range"] == '"old"'
    assert (tmp_path / "f.bin").read_bytes() == BODY


def test_download_restarts_when_server_ignores_range(tmp_path):
    (tmp_path / "f.bin.partial").write_bytes(b"x" * 5000)
    with serve({"/f.bin": BODY}) as srv:
        (tmp_path / "f.bin.partial.json").write_text(json.dumps({"url_sha256": url_key(srv.url("/f.bin"))}))
        srv.ignore_range = True
        download(srv.url("/f.bin"), tmp_path / "f.bin", sha256=SHA)
    assert (tmp_path / "f.bin").read_bytes() == BODY


def test_download_partial_longer_than_file_restarts(tmp_path):
    (tmp_path / "f.bin.partial").write_bytes(b"x" * (len(BODY) + 10))
    with serve({"/f.bin": BODY}) as srv:
        (tmp_path / "f.bin.partial.json").write_text(json.dumps({"url_sha256": url_key(srv.url("/f.bin"))}))
        download(srv.url("/f.bin"), tmp_path / "f.bin", sha256=SHA)
    assert (tmp_path / "f.bin").read_bytes() == BODY


def test_checksum_mismatch_is_an_error_and_leaves_nothing(tmp_path):
    with serve({"/f.bin": BODY}) as srv:
        with pytest.raises(DownloadError, match="sha256"):
            download(srv.url("/f.bin"), tmp_path / "f.bin", sha256="0" * 64)
    assert list(tmp_path.iterdir()) == []


def test_existing_verified_file_is_reused(tmp_path):
    (tmp_path / "f.bin").write_bytes(BODY)
    with serve({"/f.bin": b"other"}) as srv:
        assert download(srv.url("/f.bin"), tmp_path / "f.bin", sha256=SHA).read_bytes() == BODY
        assert srv.requests == []


def test_http_error_names_redacted_url(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    with serve({}) as srv:
        with pytest.raises(DownloadError) as err:
            download(srv.url(f"/ds/abc?key={SECRET}"), tmp_path / "x.zip")
    assert "404" in str(err.value) and "key=***" in str(err.value)
    assert SECRET not in str(err.value) and SECRET not in caplog.text


def test_offline_error_names_host_and_hides_key(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once we leave: nothing listens there
    with pytest.raises(DownloadError, match="cannot reach 127.0.0.1") as err:
        download(f"http://127.0.0.1:{port}/ds/abc?key={SECRET}&x=1", tmp_path / "x.zip")
    assert SECRET not in str(err.value) and SECRET not in caplog.text
    assert err.value.__cause__ is None and err.value.__context__ is None


def test_urllib3_debug_logs_are_redacted(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    with serve({"/ds/abc": BODY}) as srv:
        download(srv.url(f"/ds/abc?key={SECRET}"), tmp_path / "x.bin")
    assert "/ds/abc" in caplog.text  # urllib3 did log the request ...
    assert SECRET not in caplog.text  # ... without the key


# --------------------------------------------------------------------------- safe_extract
def _zip(entries: dict[str, bytes], symlink: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (0o120777 << 16)
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


def _tar(entries: dict[str, bytes], gz: bool = True, link: tuple[str, str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tf:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(link[0])
            info.type = link[2]
            info.linkname = link[1]
            tf.addfile(info)
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["zip", "tar", "tar.gz"])
def test_safe_extract_good_archive(tmp_path, kind):
    entries = {"model/a.txt": b"a", "model/sub/b.bin": b"bb", "top.txt": b"t"}
    data = _zip(entries) if kind == "zip" else _tar(entries, gz=kind == "tar.gz")
    archive = tmp_path / f"x.{kind}"
    archive.write_bytes(data)
    out = tmp_path / "out"
    (out / "keep").mkdir(parents=True)
    (out / "model").mkdir()
    (out / "model" / "stale.txt").write_text("old")
    assert safe_extract(archive, out) == out
    assert (out / "model" / "sub" / "b.bin").read_bytes() == b"bb"
    assert (out / "top.txt").read_bytes() == b"t"
    assert (out / "keep").is_dir() and not (out / "model" / "stale.txt").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("name", ["../evil.txt", "a/../../evil.txt", "/tmp/evil.txt", "C:/evil.txt", "..\\evil.txt"])
@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_safe_extract_rejects_escapes(tmp_path, name, kind):
    entries = {"ok.txt": b"ok", name: b"evil"}
    archive = tmp_path / f"x.{kind}"
    archive.write_bytes(_zip(entries) if kind == "zip" else _tar(entries))
    out = tmp_path / "a" / "b" / "out"
    with pytest.raises(DownloadError, match="outside the target folder"):
        safe_extract(archive, out)
    assert list(out.iterdir()) == []  # nothing written, not even the good member
    assert not list(tmp_path.rglob("evil.txt"))


def test_safe_extract_rejects_zip_symlink(tmp_path):
    archive = tmp_path / "x.zip"
    archive.write_bytes(_zip({"ok.txt": b"ok"}, symlink="link"))
    with pytest.raises(DownloadError, match="link"):
        safe_extract(archive, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("linktype", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_safe_extract_rejects_tar_links(tmp_path, linktype):
    archive = tmp_path / "x.tar.gz"
    archive.write_bytes(_tar({"ok.txt": b"ok"}, link=("link", "/etc/passwd", linktype)))
    with pytest.raises(DownloadError, match="link"):
        safe_extract(archive, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_safe_extract_truncated_archive(tmp_path, kind):
    entries = {f"f{i}.bin": os.urandom(5000) for i in range(5)}
    data = _zip(entries) if kind == "zip" else _tar(entries)
    archive = tmp_path / f"x.{kind}"
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(DownloadError, match="download again"):
        safe_extract(archive, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_safe_extract_missing_archive(tmp_path):
    with pytest.raises(DownloadError, match="no such archive"):
        safe_extract(tmp_path / "nope.zip", tmp_path / "out")


# -- downloads are keyed by URL + size + sha256: a cached or partial file of another URL is never used ----------
OTHER = os.urandom(50_000)


@pytest.mark.parametrize("left_behind", ["finished", "partial", "unkeyed-partial", "record-of-another-file"])
def test_a_file_left_by_another_url_is_never_used(tmp_path, left_behind):
    with serve({"/a.bin": OTHER, "/b.bin": BODY}) as srv:
        if left_behind == "finished":
            download(srv.url("/a.bin"), tmp_path / "f.bin")
        elif left_behind == "partial":
            (tmp_path / "f.bin.partial").write_bytes(OTHER[:10_000])
            (tmp_path / "f.bin.partial.json").write_text(json.dumps({"url_sha256": url_key(srv.url("/a.bin"))}))
        elif left_behind == "unkeyed-partial":
            (tmp_path / "f.bin.partial").write_bytes(OTHER[:10_000])
        else:  # the record says URL b, but the file was changed since
            download(srv.url("/b.bin"), tmp_path / "f.bin")
            (tmp_path / "f.bin").write_bytes(OTHER)
        before = len(srv.requests)
        out = download(srv.url("/b.bin"), tmp_path / "f.bin")
        assert [r["path"] for r in srv.requests[before:]] == ["/b.bin"]
        assert "Range" not in srv.requests[-1]["headers"]
        assert out.read_bytes() == BODY
        download(srv.url("/b.bin"), tmp_path / "f.bin")  # the same URL again: reused, not requested
        assert len(srv.requests) == before + 1
    record = json.loads((tmp_path / "f.bin.json").read_text())
    assert record == {"url_sha256": url_key(srv.url("/b.bin")), "bytes": len(BODY), "sha256": SHA,
                      "etag": record["etag"]} and record["etag"]
    assert "b.bin" not in (tmp_path / "f.bin.json").read_text()  # a hash, never the URL (it may hold a key)


def test_an_unkeyed_file_is_reused_only_when_allowed(tmp_path):
    (tmp_path / "f.bin").write_bytes(OTHER)  # e.g. an archive the user put there by hand
    with serve({"/b.bin": BODY}) as srv:
        assert download(srv.url("/b.bin"), tmp_path / "f.bin").read_bytes() == OTHER
        assert download(srv.url("/b.bin"), tmp_path / "f.bin", reuse_unkeyed=False).read_bytes() == BODY


# -- issue 24, mechanism 11: caps, one folder per archive, HTTPS, pinned checksums -----------------------------
def _deflated_zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_a_zip_bomb_is_named_and_nothing_is_kept(tmp_path, kind):
    entries = {"zeros.bin": bytes(8 << 20)}  # 8 MiB of zeros: a few KB packed, far above the 100x ratio
    archive = tmp_path / f"x.{kind}"
    archive.write_bytes(_deflated_zip(entries) if kind == "zip" else _tar(entries))
    with pytest.raises(DownloadError, match="zip bomb"):
        safe_extract(archive, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []
    with pytest.raises(DownloadError, match=r"more than [0-9.]+ GiB"):
        safe_extract(archive, tmp_path / "out", max_bytes=2**20, max_ratio=1e9)
    assert safe_extract(archive, tmp_path / "out", max_ratio=1e9) == tmp_path / "out"  # a cap the caller raised


def test_a_zip_that_lies_about_its_sizes_is_stopped_by_the_bytes_written(tmp_path):
    archive = tmp_path / "x.zip"
    archive.write_bytes(_deflated_zip({"zeros.bin": bytes(4 << 20)}))
    data = bytearray(archive.read_bytes())
    for header in (b"PK\x03\x04", b"PK\x01\x02"):  # declare 16 bytes in the local and central headers
        at = data.find(header)
        offset = 22 if header == b"PK\x03\x04" else 24
        data[at + offset:at + offset + 4] = (16).to_bytes(4, "little")
    archive.write_bytes(bytes(data))
    with pytest.raises(DownloadError):  # zip bomb (bytes counted) or a corrupt zip: never 4 MiB written
        safe_extract(archive, tmp_path / "out", max_bytes=2**20)
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]


def test_only_keeps_an_archive_in_its_own_folder(tmp_path):
    out = tmp_path / "cache"
    (out / "other" / "checkpoint").mkdir(parents=True)
    (out / "other" / "checkpoint" / "ckpt-0.index").write_bytes(b"GOOD")
    archive = tmp_path / "mine.tar.gz"
    archive.write_bytes(_tar({"mine/a.txt": b"a", "other/checkpoint/ckpt-0.index": b"EVIL"}))
    with pytest.raises(DownloadError, match="outside mine/"):
        safe_extract(archive, out, only="mine")
    assert (out / "other" / "checkpoint" / "ckpt-0.index").read_bytes() == b"GOOD" and not (out / "mine").exists()
    archive.write_bytes(_tar({"mine/a.txt": b"a"}))
    safe_extract(archive, out, only="mine")
    assert (out / "mine" / "a.txt").read_bytes() == b"a"


def test_only_https_is_fetched():
    from maskdetect.download import secure_url

    assert secure_url("http://download.example.org/x.tar.gz") == "https://download.example.org/x.tar.gz"
    assert secure_url("https://h/x") == "https://h/x"
    assert secure_url("http://127.0.0.1:8000/x") == "http://127.0.0.1:8000/x"  # the tests' loopback servers
    for url in (f"ftp://u:{SECRET}@h/x", f"file:///etc/passwd?key={SECRET}", "https:///x", f"http://u:{SECRET}?x@h/"):
        with pytest.raises(DownloadError) as err:
            secure_url(url)
        assert SECRET not in str(err.value)


def test_the_zoo_archives_we_name_are_in_the_pin_table_and_an_unpinned_download_says_so(tmp_path, caplog):
    from maskdetect.download import PINNED_SHA256, pinned_sha256
    from maskdetect.train.pipeline import MODELS

    assert {f"{spec.zoo_archive}.tar.gz" for spec in MODELS.values()} <= PINNED_SHA256.keys()
    with caplog.at_level(logging.WARNING):
        assert pinned_sha256(tmp_path / "efficientdet_d0_coco17_tpu-32.tar.gz") is None
    assert "no pinned sha256" in caplog.text

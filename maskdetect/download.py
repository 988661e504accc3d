"""Downloading and unpacking: resumable, verified, atomic, and careful with secrets.

``download(url, dest)`` streams into ``dest.partial`` (resumed with an HTTP ``Range`` request when a previous
attempt was cut off, restarted when the server or the file changed), checks the size and an optional sha256,
then renames to ``dest``. Only HTTPS is fetched: an ``http://`` URL is fetched as ``https://`` (and a redirect
to plain HTTP is refused), except on loopback (the tests' stand-in servers). Archives of the models we name have
a pinned sha256 in :data:`PINNED_SHA256`; where we could not learn it (offline), the table says so and the
download logs that it is verified by size only.

``safe_extract(archive, dest_dir)`` unpacks .zip/.tar/.tar.gz archives and refuses any member that would land
outside ``dest_dir`` (``..``, absolute paths, links, devices), archives that unpack to more than
:data:`MAX_EXTRACT_BYTES` or more than :data:`MAX_EXTRACT_RATIO` times their own size (a zip bomb, named as
such), and, with ``only=NAME``, any member outside ``NAME/``: each archive lands in its own folder and can never
replace what other archives put beside it.

Secrets: the URL's password and query values such as ``key=``/``api_key=``/``token=`` are replaced by ``***`` in
every message, progress bar and log record, including those of ``urllib3`` (see :mod:`maskdetect.redact`).

Example:
    >>> from maskdetect.download import download, safe_extract  # doctest: +SKIP
    >>> tar = download("http://download.tensorflow.org/models/object_detection/tf2/20200711/x.tar.gz",
    ...                "models/x.tar.gz")  # doctest: +SKIP
    >>> safe_extract(tar, "models")  # doctest: +SKIP
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import tarfile
import time
import zipfile
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from maskdetect.errors import DownloadError
from maskdetect.fileio import make_partial
from maskdetect.redact import install_log_filter, redact, redact_url, register_url_secrets, split_userinfo

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 16
TIMEOUT_S = (10, 60)  # connect, read
RETRIES = 3
#: An archive may unpack to at most this many bytes in total ...
MAX_EXTRACT_BYTES = 16 * 2**30
#: ... and to at most this many times its own size (model checkpoints and images compress < 3x; text ~10x).
MAX_EXTRACT_RATIO = 100
#: Archives unpacking to less than this are never held to the ratio (a tiny archive of text compresses well).
EXTRACT_FLOOR_BYTES = 2**20
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})

#: sha256 of the model-zoo archives we name (``ARCHIVE.tar.gz``). None: not pinned, because the sums could not
#: be read here (no network but package registries when this table was written); such a download is verified
#: by its size only, and says so in the log. Fill a value in once you have fetched the archive from the
#: official address and checked it; a mismatch is then an error that names both sums.
PINNED_SHA256: dict[str, str | None] = {
    "efficientdet_d0_coco17_tpu-32.tar.gz": None,
    "efficientdet_d1_coco17_tpu-32.tar.gz": None,
    "ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8.tar.gz": None,
    "ssd_mobilenet_v2_fpnlite_640x640_coco17_tpu-8.tar.gz": None,
}


def secure_url(url: str) -> str:
    """`url` as it will be fetched: ``https://`` (an ``http://`` URL is upgraded), or ``http://`` on loopback only.

    Raises:
        DownloadError: any other scheme, or no host.
    """
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        _, sep, rest = url.partition("://")
        userinfo, after = split_userinfo(rest) if sep else (None, rest)
        printed_host = (urlsplit("x://" + after).hostname or "").lower()
    except ValueError:
        raise DownloadError(f"{redact_url(url)}: not a valid URL. Check it, and give an https:// address.") from None
    if not host:
        raise DownloadError(f"{redact_url(url)}: not a download URL (no host). Give an https:// address.")
    if userinfo is not None and host != printed_host:
        raise DownloadError(f"{redact_url(url)}: its user name or password holds a character a URL cannot carry "
                            f"as it is (?, #, / or @); percent-encode it (? is %3F, # is %23, / is %2F, @ is %40).")
    if parts.scheme == "https" or (parts.scheme == "http" and host in LOOPBACK_HOSTS):
        return url
    if parts.scheme == "http":
        log.info("%s: fetched over HTTPS instead of plain HTTP", redact_url(url))
        return "https" + url[len("http"):]
    raise DownloadError(f"{redact_url(url)}: only https:// downloads are allowed (got {parts.scheme or 'no'} "
                        f"scheme).")


def pinned_sha256(dest: str | Path) -> str | None:
    """The pinned checksum of the archive `dest` is named after (None: not in the table, or not pinned, which is
    logged)."""
    name = Path(dest).name
    if name in PINNED_SHA256 and PINNED_SHA256[name] is None:
        log.warning("%s: no pinned sha256 in maskdetect.download.PINNED_SHA256 (it could not be learnt offline); "
                    "the download is checked by size only. Pass a checksum to verify it.", name)
    return PINNED_SHA256.get(name)


# --------------------------------------------------------------------------- download
def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, dest: str | Path, *, sha256: str | None = None, desc: str | None = None,
             reuse_unkeyed: bool = True) -> Path:
    """Download ``url`` to ``dest`` and return ``dest``.

    Downloads are keyed by what they are: ``dest.json`` beside a finished download records a hash of the URL
    (never the URL: it may hold a key), the size, the ETag and the sha256. An existing ``dest`` is reused only
    for the same URL, size and (if given) ``sha256``; otherwise it is downloaded again. A ``dest`` without that
    record (e.g. an archive the user put there) is reused when it matches ``sha256`` (or when no checksum is
    given) unless ``reuse_unkeyed`` is False. An interrupted download left in ``dest.partial`` is resumed with
    ``Range`` only for the same URL; if the server ignores the range or the file changed (``If-Range`` with the
    ETag/Last-Modified seen before), it restarts from zero. The file appears under ``dest`` only once complete
    and verified.

    Raises:
        DownloadError: offline ("cannot reach HOST: ..."), HTTP errors, size or checksum mismatch. Messages
            never contain the ``key=``/``token=`` query values.
    """
    dest = Path(dest)
    register_url_secrets(url)
    url = secure_url(url)
    if sha256 is None:
        sha256 = pinned_sha256(dest)
    shown = redact_url(url)
    key = url_key(url)
    record_path = _meta_path(dest)
    if dest.is_file():
        record = _read_meta(record_path)
        digest = sha256_file(dest) if sha256 is not None or record else None
        if record:
            same = (record.get("url_sha256") == key and record.get("bytes") == dest.stat().st_size
                    and record.get("sha256") == digest and (sha256 is None or digest == sha256.lower()))
        else:
            same = reuse_unkeyed and (sha256 is None or digest == sha256.lower())
        if same:
            log.info("%s: already downloaded", dest)
            return dest
        log.warning("%s: %s; downloading again", dest, "was downloaded from another URL or changed since" if record
                    else "not a verified download of this URL")
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    last_error: DownloadError | None = None
    for attempt in range(1, RETRIES + 1):
        try:
            _fetch(url, shown, partial, desc or dest.name)
            break
        except _Retryable as exc:
            last_error = DownloadError(f"{shown}: {exc}. Run the command again to resume from "
                                       f"{partial.stat().st_size if partial.exists() else 0} bytes.")
            log.warning("download of %s interrupted (%s); retry %d/%d", shown, exc, attempt, RETRIES)
            time.sleep(min(2 ** attempt * 0.25, 4))
    else:
        raise last_error  # type: ignore[misc]
    got = sha256_file(partial)
    if sha256 is not None and got != sha256.lower():
        partial.unlink(missing_ok=True)
        _meta_path(partial).unlink(missing_ok=True)
        pinned = PINNED_SHA256.get(dest.name) == sha256.lower()
        raise DownloadError(f"{shown}: sha256 {got} differs from the {'pinned' if pinned else 'expected'} "
                            f"{sha256.lower()}; the partial file was deleted. Check the URL (a mirror serving another "
                            f"file?) and the checksum, then run again.")
    meta = _read_meta(_meta_path(partial))
    record_path.unlink(missing_ok=True)  # never a record of the old file beside the new one
    os.replace(partial, dest)
    record_path.write_text(json.dumps({"url_sha256": key, "bytes": dest.stat().st_size, "sha256": got,
                                       "etag": meta.get("etag")}))
    _meta_path(partial).unlink(missing_ok=True)
    return dest


def remove_download(dest: str | Path) -> None:
    """Delete a finished download and its record (e.g. an archive once it is extracted)."""
    dest = Path(dest)
    dest.unlink(missing_ok=True)
    _meta_path(dest).unlink(missing_ok=True)


def url_key(url: str) -> str:
    """What a download is keyed by: a sha256 of the URL (the URL itself may hold a key and is never stored)."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


class _Retryable(Exception):
    """A transient failure: connection dropped mid-way, short read."""


def _meta_path(path: Path) -> Path:
    """``NAME.json`` beside ``NAME``: what a download (or a partial one) is keyed by."""
    return path.with_name(path.name + ".json")


def _fetch(url: str, shown: str, partial: Path, desc: str) -> None:
    import requests
    from tqdm.auto import tqdm

    install_log_filter()  # still first after the imports
    meta_file = _meta_path(partial)
    have = partial.stat().st_size if partial.exists() else 0
    meta = _read_meta(meta_file) if have else {}
    if have and meta.get("url_sha256") != url_key(url):  # another URL's partial (or an unkeyed one): not ours
        log.info("%s: discarding a partial download of another URL", partial)
        partial.unlink()
        have, meta = 0, {}
    headers = {"Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
        validator = meta.get("etag") or meta.get("last_modified")
        if validator:
            headers["If-Range"] = validator
    host = urlsplit(url).hostname or "?"
    error: Exception | None = None  # raised outside the except blocks so no traceback holds the raw URL
    try:
        response = requests.get(url, headers=headers, stream=True, timeout=TIMEOUT_S)
    except requests.exceptions.ConnectionError as exc:
        error = DownloadError(f"cannot reach {host}: {redact(_reason(exc))}. Check the network connection "
                              f"(or proxy) and run again; {shown} was not downloaded.")
    except requests.exceptions.Timeout as exc:
        error = _Retryable(f"timed out ({redact(_reason(exc))})")
    except requests.exceptions.RequestException as exc:
        error = DownloadError(f"{shown}: {redact(_reason(exc))}")
    if error is not None:
        raise error
    with response:
        final = urlsplit(response.url)
        if final.scheme != "https" and (final.hostname or "").lower() not in LOOPBACK_HOSTS:
            raise DownloadError(f"{shown}: redirected to plain HTTP ({final.hostname}); refusing to download over "
                                f"an unencrypted connection.")
        if response.status_code == 416 and have:  # our partial is not a prefix the server can continue
            partial.unlink(missing_ok=True)
            meta_file.unlink(missing_ok=True)
            raise _Retryable("the server refused to resume; restarting")
        if response.status_code >= 500:
            raise _Retryable(f"HTTP {response.status_code} {response.reason}")
        if response.status_code >= 400:
            raise DownloadError(f"{shown}: HTTP {response.status_code} {response.reason}. Check that the link is "
                                f"complete and still valid (export links expire).")
        if response.status_code == 206 and _range_start(response) == have:
            mode, start = "ab", have
        else:
            if have:
                log.info("%s: server sent the whole file; restarting the download", shown)
            mode, start = "wb", 0
        length = response.headers.get("Content-Length")
        total = start + int(length) if length and length.isdigit() else None
        _write_meta(meta_file, response, url_key(url))
        received = start
        with open(partial, mode) as f, tqdm(total=total, initial=start, unit="B", unit_scale=True,
                                            unit_divisor=1024, desc=redact(desc), leave=False,
                                            disable=None) as bar:
            try:
                for chunk in response.iter_content(CHUNK_BYTES):
                    f.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            except requests.exceptions.RequestException as exc:
                error = _Retryable(f"connection lost after {received} bytes ({redact(_reason(exc))})")
        if error is not None:
            raise error
    if total is not None and received != total:
        if received > total:
            partial.unlink(missing_ok=True)
            meta_file.unlink(missing_ok=True)
            raise DownloadError(f"{shown}: received {received} bytes, more than the announced {total}; the partial "
                                f"file was deleted. Run again.")
        raise _Retryable(f"connection lost after {received} of {total} bytes")


def _reason(exc: BaseException) -> str:
    # requests nests the useful part (e.g. "Name or service not known") inside its own wrapper messages.
    inner = exc.args[0] if exc.args else exc
    reason = getattr(inner, "reason", None)
    return str(reason if reason is not None else inner)


def _range_start(response) -> int | None:
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _read_meta(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_meta(path: Path, response, key: str) -> None:
    meta = {"url_sha256": key, "etag": response.headers.get("ETag"),
            "last_modified": response.headers.get("Last-Modified")}
    path.write_text(json.dumps(meta))


# --------------------------------------------------------------------------- extraction
def safe_extract(archive: str | Path, dest_dir: str | Path, *, only: str | None = None,
                 max_bytes: int | None = None, max_ratio: float | None = None) -> Path:
    """Unpack a .zip, .tar, .tar.gz/.tgz (or .tar.bz2/.tar.xz) archive into ``dest_dir`` and return ``dest_dir``.

    Every member is checked before anything is written: absolute paths, ``..`` components, symbolic and hard
    links and special files are refused with a DownloadError naming the member; so is an archive whose members
    add up to more than `max_bytes` (default :data:`MAX_EXTRACT_BYTES`) or to more than `max_ratio` (default
    :data:`MAX_EXTRACT_RATIO`) times the archive's own size: a zip bomb. The bytes really written are counted
    too (a zip can lie about its sizes). With `only`, every member must lie in the folder ``only/``, so the
    archive can replace nothing but that folder. Members are unpacked into a temporary folder inside
    ``dest_dir`` and moved into place only when the whole archive was read, replacing top-level entries of the
    same name; other content of ``dest_dir`` is kept. A full disk is named as such, and leaves nothing behind.
    """
    archive, dest_dir = Path(archive), Path(dest_dir)
    if not archive.is_file():
        raise DownloadError(f"{archive}: no such archive. Download it first.")
    limits = _Limits(archive, MAX_EXTRACT_BYTES if max_bytes is None else max_bytes,
                     MAX_EXTRACT_RATIO if max_ratio is None else max_ratio)
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = make_partial(dest_dir / "extract", is_dir=True)
    try:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, tmp, limits, only)
        else:
            _extract_tar(archive, tmp, limits, only)
        for entry in sorted(tmp.iterdir()):
            target = dest_dir / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            entry.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest_dir


class _Limits:
    """The size and ratio caps of one extraction, and the bytes counted so far."""

    def __init__(self, archive: Path, max_bytes: int, max_ratio: float) -> None:
        self.archive, self.max_bytes = archive, max_bytes
        self.cap = min(max_bytes, max(int(max_ratio * archive.stat().st_size), EXTRACT_FLOOR_BYTES))
        self.ratio = max_ratio
        self.written = 0

    def check_declared(self, total: int) -> None:
        if total > self.cap:
            raise self._error(total, "declares")

    def add(self, n: int) -> None:
        self.written += n
        if self.written > self.cap:
            raise self._error(self.written, "wrote")

    def _error(self, total: int, verb: str) -> DownloadError:
        size = max(self.archive.stat().st_size, 1)
        why = (f"more than {self.max_bytes / 2**30:g} GiB" if total > self.max_bytes
               else f"{total / size:.0f} times its own size of {size} bytes (limit {self.ratio:g}x)")
        return DownloadError(f"{self.archive}: a zip bomb? it {verb} {total} bytes of content, {why}; refusing to "
                             f"extract it (nothing was kept). Get the archive from a trusted source.")


def _check_member_name(archive: Path, name: str, only: str | None = None) -> None:
    norm = name.replace("\\", "/")
    path = PurePosixPath(norm)
    if not norm or norm.startswith("/") or re.match(r"^[A-Za-z]:", norm) or ".." in path.parts:
        raise DownloadError(f"{archive}: member {name!r} would be written outside the target folder; "
                            f"refusing to extract this archive. Get it from a trusted source.")
    if only is not None and (not path.parts or path.parts[0] != only):
        raise DownloadError(f"{archive}: member {name!r} lies outside {only}/, the one folder this archive may "
                            f"write (it could replace other cached files); refusing to extract it. Get it from a "
                            f"trusted source.")


def _disk_error(archive: Path, exc: OSError) -> DownloadError | None:
    if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return DownloadError(f"{archive}: no space left while extracting ({exc.strerror}); nothing was kept. "
                             f"Free some space and run again.")
    return None


def _extract_zip(archive: Path, dest: Path, limits: _Limits, only: str | None) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            for info in members:
                _check_member_name(archive, info.filename, only)
                mode = info.external_attr >> 16
                if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                    raise DownloadError(f"{archive}: member {info.filename!r} is a link or special file; refusing "
                                        f"to extract this archive. Get it from a trusted source.")
            limits.check_declared(sum(info.file_size for info in members))
            for info in members:
                target = dest / info.filename
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as out:
                    for block in iter(lambda: src.read(CHUNK_BYTES), b""):
                        limits.add(len(block))
                        out.write(block)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
        error = _disk_error(archive, exc) if isinstance(exc, OSError) else None
        raise error or DownloadError(f"{archive}: corrupt or truncated zip ({exc}). Delete it and download "
                                     f"again.") from None


def _extract_tar(archive: Path, dest: Path, limits: _Limits, only: str | None) -> None:
    try:
        with tarfile.open(archive, "r:*") as tf:
            members = tf.getmembers()
            for member in members:
                _check_member_name(archive, member.name, only)
                if not (member.isfile() or member.isdir()):
                    raise DownloadError(f"{archive}: member {member.name!r} is a link or special file; refusing "
                                        f"to extract this archive. Get it from a trusted source.")
            limits.check_declared(sum(m.size for m in members if m.isfile()))  # a tar's sizes are exact
            tf.extractall(dest, members=members, filter="data")
    except tarfile.ReadError as exc:
        raise DownloadError(f"{archive}: not a zip or tar archive, or truncated ({exc}). Delete it and download "
                            f"again.") from None
    except (tarfile.TarError, EOFError, OSError) as exc:
        error = _disk_error(archive, exc) if isinstance(exc, OSError) else None
        raise error or DownloadError(f"{archive}: corrupt or truncated archive ({exc}). Delete it and download "
                                     f"again.") from None

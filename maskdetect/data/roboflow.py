"""Roboflow datasets in TFRecord format: by workspace/project/version (``roboflow`` package) or by export link.

The API key comes from ``ROBOFLOW_API_KEY`` or Colab's secret store, never from an argument, and is never printed,
logged or put in an error message; the ``key=`` of export links is treated the same way.

Example:
    >>> from maskdetect.data import download_roboflow
    >>> download_roboflow("data/roboflow", workspace="me", project="masks", version=3)  # doctest: +SKIP
    >>> download_roboflow("data/roboflow", url="https://public.roboflow.com/ds/abc?key=...")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from pathlib import Path

from maskdetect.download import download, remove_download, safe_extract
from maskdetect.errors import ConfigError, DataError, DownloadError
from maskdetect.fileio import atomic_path
from maskdetect.redact import redact, redact_url, register_secret

log = logging.getLogger(__name__)

ENV_KEY = "ROBOFLOW_API_KEY"
EXPORT_FORMAT = "tfrecord"


def get_api_key() -> str:
    """The Roboflow API key from ``$ROBOFLOW_API_KEY``, else from Colab's secret store.

    Raises:
        ConfigError: no key anywhere (the message says how to set one).
    """
    key = os.environ.get(ENV_KEY, "").strip()
    if not key:
        try:
            from google.colab import userdata  # type: ignore[import-not-found]

            key = (userdata.get(ENV_KEY) or "").strip()
        except Exception:  # not on Colab, secret missing, or notebook access not granted
            key = ""
    if not key:
        raise ConfigError(f"no Roboflow API key: set the environment variable {ENV_KEY} (on Colab: add the secret "
                          f"{ENV_KEY} in the key icon panel and grant this notebook access). It is never taken from "
                          f"the command line.")
    register_secret(key)
    return key


def download_roboflow(out: str | Path, *, workspace: str | None = None, project: str | None = None,
                      version: int | str | None = None, url: str | None = None) -> Path:
    """Download a Roboflow dataset version as TFRecords into ``out`` and return ``out``.

    Either ``workspace``/``project``/``version`` (through the ``roboflow`` package, key from
    :func:`get_api_key`) or ``url``, an export link (a zip, ``https://public.roboflow.com/ds/...?key=...``).
    ``out`` gets Roboflow's layout: ``train/``, ``valid/``, ``test/`` with ``*.tfrecord`` and
    ``*_label_map.pbtxt``; it appears only when complete. The zip of a ``url`` download is kept beside ``out``
    as ``.NAME.zip.partial`` while incomplete, so running again resumes.

    Raises:
        ConfigError: neither or both of ``url`` and ``workspace/project/version``; no API key.
        DownloadError: network, HTTP, archive or Roboflow errors (secrets redacted).
        DataError: the export holds no TFRecord file.
    """
    out = Path(out)
    by_name = workspace is not None or project is not None or version is not None
    if (url is None) == (not by_name) or (by_name and None in (workspace, project, version)):
        raise ConfigError("give either --url (an export link) or all of --workspace, --project and --version.")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out}: already exists and is not empty. Choose a new output folder.")
    out.parent.mkdir(parents=True, exist_ok=True)
    if url is not None:
        zip_path = out.with_name(f".{out.name}.zip")  # reused only for the same URL (see download())
        download(url, zip_path, desc=f"roboflow {out.name}", reuse_unkeyed=False)
        with atomic_path(out, is_dir=True) as tmp:
            safe_extract(zip_path, tmp)
            _check_layout(tmp, redact_url(url))
        remove_download(zip_path)
        return out
    with atomic_path(out, is_dir=True) as tmp:
        _download_with_package(tmp, str(workspace), str(project), version)  # type: ignore[arg-type]
        _check_layout(tmp, f"roboflow {workspace}/{project}/{version}")
    return out


def _download_with_package(folder: Path, workspace: str, project: str, version: int | str) -> None:
    try:
        version_number = int(version)
    except (TypeError, ValueError):
        raise ConfigError(f"--version {version!r}: expected the version number, e.g. 3.") from None
    key = get_api_key()
    captured = io.StringIO()
    error: Exception | None = None
    try:
        import roboflow
    except ImportError:
        raise ConfigError("the `roboflow` package is not installed: run `make setup` (it is in requirements.txt).") \
            from None
    register_secret(key)  # again, now that roboflow's loggers exist
    # The package prints progress (and, on some errors, request URLs) to stdout: capture it and log it redacted.
    try:
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            rf = roboflow.Roboflow(api_key=key)
            dataset_version = rf.workspace(workspace).project(project).version(version_number)
            dataset_version.download(EXPORT_FORMAT, location=str(folder), overwrite=True)
    except Exception as exc:  # roboflow raises RuntimeError, HTTPError, KeyError, ... with URLs in the text
        error = DownloadError(f"roboflow {workspace}/{project}/{version_number}: {redact(_describe(exc))}. Check the "
                              f"names (as in the dataset URL app.roboflow.com/WORKSPACE/PROJECT/VERSION) and that the "
                              f"API key in {ENV_KEY} has access.")
    finally:
        for line in captured.getvalue().replace("\r", "\n").splitlines():
            if line.strip():
                log.info("roboflow: %s", redact(line.strip()))
    if error is not None:
        raise error


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _check_layout(folder: Path, what: str) -> None:
    records = sorted(p.relative_to(folder) for p in folder.rglob("*.tfrecord"))
    if not records:
        found = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())[:10]
        raise DataError(f"{what}: the export holds no *.tfrecord file (found: {', '.join(found) or 'nothing'}). "
                        f"Export the dataset version in the 'TFRecord' format.")
    maps = sorted(folder.rglob("*.pbtxt"))
    log.info("%s: %s%s", what, ", ".join(str(r) for r in records),
             "" if maps else " (no label map *.pbtxt found)")

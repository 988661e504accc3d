"""Where a user's data comes from, before ``maskdetect data convert``: the Kaggle face-mask set or an uploaded zip.

* :func:`download_kaggle` fetches the Kaggle data set "Face Mask Detection" by andrewmvd (CC0; 853 photos with
  Pascal VOC boxes of the three classes this package uses) through ``kagglehub``, with the user's Kaggle token
  from the environment (``KAGGLE_USERNAME``/``KAGGLE_KEY``, or ``KAGGLE_API_TOKEN``) or Colab's secret store.
* :func:`unpack_zip` unpacks a VOC or YOLO zip (checked member by member, :func:`maskdetect.download.safe_extract`)
  into a folder named by its checksum, and says which format it holds (:func:`detect_format`).
* :func:`upload_file` asks for that zip (or a clip, in notebook 02) in Colab's file picker.

Roboflow exports have their own module (:mod:`maskdetect.data.roboflow`); the bundled sample is ``sample/``.

Example:
    >>> fmt, root = unpack_zip("masks.zip", "workspace/data/uploads")     # doctest: +SKIP
    >>> convert(fmt, root, "workspace/data/masks")                       # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from maskdetect.errors import ConfigError, DataError, DownloadError

logger = logging.getLogger(__name__)

#: The Kaggle data set the bundled model was trained on: "Face Mask Detection" by andrewmvd, licence CC0.
KAGGLE_DATASET = "andrewmvd/face-mask-detection"
KAGGLE_SECRETS = ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN")
KAGGLEHUB_INSTALL = "pip install kagglehub"


def kaggle_credentials() -> list[str]:
    """Put the user's Kaggle token where ``kagglehub`` reads it (the environment), from Colab's secret store when
    the environment has none; return the names found (never the values).

    Raises:
        ConfigError: no token anywhere, with where to put one.
    """
    found = [name for name in KAGGLE_SECRETS if os.environ.get(name)]
    if not found:
        try:
            from google.colab import userdata  # type: ignore[import-not-found]
        except ImportError:
            userdata = None
        for name in KAGGLE_SECRETS if userdata is not None else ():
            try:
                value = userdata.get(name)
            except Exception:  # Colab raises its own SecretNotFoundError / NotebookAccessError
                value = None
            if value:
                os.environ[name] = value
                found.append(name)
    if not (set(found) >= {"KAGGLE_USERNAME", "KAGGLE_KEY"} or "KAGGLE_API_TOKEN" in found):
        raise ConfigError("no Kaggle token: on kaggle.com, Settings > API > Create New Token; then set "
                          "KAGGLE_USERNAME and KAGGLE_KEY (on Colab: the key icon on the left, add both secrets "
                          "and allow this notebook), or KAGGLE_API_TOKEN")
    return found


def download_kaggle(dataset: str = KAGGLE_DATASET) -> Path:
    """The Kaggle data set `dataset` (default: the face-mask set) in kagglehub's cache; returns its folder.

    Raises:
        ConfigError: ``kagglehub`` is not installed, or no Kaggle token.
        DownloadError: Kaggle refused or the download failed (the token is never in the message).
    """
    try:
        import kagglehub  # type: ignore[import-not-found]
    except ImportError as exc:
        raise ConfigError(f"the Kaggle download needs kagglehub (Colab has it): {KAGGLEHUB_INSTALL}") from exc
    kaggle_credentials()
    try:
        path = Path(kagglehub.dataset_download(dataset))
    except Exception as exc:  # kagglehub raises requests' and its own errors
        from maskdetect.redact import redact

        raise DownloadError(f"Kaggle data set {dataset}: {redact(exc)}") from exc
    logger.info("Kaggle data set %s in %s", dataset, path)
    return path


def detect_format(root: str | Path) -> str:
    """``"voc"`` or ``"yolo"``: the annotation format of the data set under `root`.

    VOC: ``*.xml`` files holding ``<annotation>``. YOLO: ``images/`` with ``labels/*.txt`` beside it, and
    ``classes.txt``, ``obj.names`` or ``data.yaml`` naming the classes.

    Raises:
        DataError: neither, with what each format needs.
    """
    root = Path(root)
    for xml in root.rglob("*.xml"):
        try:
            head = xml.read_text(encoding="utf-8", errors="replace")[:2000]
        except OSError:
            continue
        if "<annotation" in head:
            return "voc"
    names = any(next(root.rglob(name), None) for name in ("classes.txt", "obj.names", "data.yaml", "dataset.yaml"))
    if names and next(root.rglob("labels"), None) is not None:
        return "yolo"
    raise DataError(f"{root}: neither Pascal VOC (annotations/*.xml beside images/) nor YOLO (images/ and labels/ "
                    "with classes.txt or data.yaml) found in this zip")


def unpack_zip(archive: str | Path, dest_root: str | Path) -> tuple[str, Path]:
    """Unpack a VOC or YOLO zip into ``dest_root/<stem>-<checksum>`` and return ``(format, folder)``.

    The folder is named by the zip's content, so running a notebook again reuses it and another zip of the same
    name gets its own; nothing else in `dest_root` is touched. For YOLO, the folder returned is the one that
    holds the class names (a zip often wraps everything in one top folder).
    """
    from maskdetect.download import safe_extract, sha256_file

    archive = Path(archive)
    if not archive.is_file():
        raise DownloadError(f"{archive}: no such zip")
    folder = Path(dest_root) / f"{archive.stem}-{sha256_file(archive)[:12]}"
    if not folder.is_dir():
        staging = folder.with_name(f".{folder.name}.partial")
        safe_extract(archive, staging)
        staging.rename(folder)
    fmt = detect_format(folder)
    if fmt == "yolo":
        names = [p for name in ("classes.txt", "obj.names", "data.yaml", "dataset.yaml") for p in folder.rglob(name)]
        folder = min((p.parent for p in names), key=lambda p: len(p.parts))
    return fmt, folder


def upload_file(dest_root: str | Path, suffixes: tuple[str, ...] = (".zip",)) -> Path:
    """Colab's file picker for one file with one of `suffixes` (a data set's zip, a clip), saved to `dest_root`
    under its own name (atomically); returns its path.

    Raises:
        DataError: nothing, or not exactly one file of those kinds, was chosen.
    """
    from google.colab import files  # type: ignore[import-not-found]

    from maskdetect.fileio import atomic_path

    uploaded = files.upload()
    chosen = {name: data for name, data in uploaded.items() if name.lower().endswith(tuple(suffixes))}
    if len(chosen) != 1:
        raise DataError(f"upload one file ending in {' or '.join(suffixes)} (got {sorted(uploaded) or 'nothing'})")
    (name, data), = chosen.items()
    dest = Path(dest_root) / Path(name).name
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)
    logger.info("uploaded %s (%d bytes)", dest, len(data))
    return dest


__all__ = ["KAGGLE_DATASET", "detect_format", "download_kaggle", "kaggle_credentials", "unpack_zip", "upload_file"]

"""File kinds by suffix, one table for the whole package: still images and videos; and reading one image file.

A ``.gif`` is a video here (it may be animated, and ffmpeg decodes it); a dataset reader that meets one takes its
first frame (:data:`maskdetect.data.formats.DATASET_IMAGE_SUFFIXES`).
"""

from __future__ import annotations

from pathlib import Path

from maskdetect.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".ts", ".wmv", ".flv", ".gif")


def read_image(path: str | Path):
    """An image file as an RGB ``uint8`` array ``(H, W, 3)`` (EXIF orientation applied, as OpenCV reads it).

    Raises:
        DataError: the file is missing or cannot be decoded.
    """
    import cv2

    if not Path(path).is_file():
        raise DataError(f"{path}: no such image file")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(f"{path}: cannot read this image (missing, corrupt or unsupported format)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

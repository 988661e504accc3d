"""File kinds by suffix, one table for the whole package: still images and videos.

A ``.gif`` is a video here (it may be animated, and ffmpeg decodes it); a dataset reader that meets one takes its
first frame (:data:`maskdetect.data.formats.DATASET_IMAGE_SUFFIXES`).
"""

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".ts", ".wmv", ".flv", ".gif")

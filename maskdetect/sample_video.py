"""The bundled sample's video: a slow pan and zoom across one CC0 sample image, H.264 through our writer.

Its frame count and rate are exactly predictable (:func:`sample_frame_count`), and its defaults are
deliberately awkward for a video pipeline: 30000/1001 FPS (29.97) and an odd size (641x361, written padded to
642x362; see :mod:`maskdetect.infer.video`).

Example:
    >>> path = make_sample_video("sample/face-mask/images/maksssksksss13.jpg", "workspace/sample.mp4")  # doctest: +SKIP
    >>> count_frames(path) == sample_frame_count(4, SAMPLE_FPS)                                    # doctest: +SKIP
    True
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from maskdetect.infer.video import VideoWriter, parse_rate

SAMPLE_FPS = Fraction(30000, 1001)
SAMPLE_SIZE_WH = (641, 361)


def sample_frame_count(seconds: float, fps: float | str | Fraction = SAMPLE_FPS) -> int:
    """Frames in a sample video of `seconds` at `fps`: ``round(seconds * fps)`` (4 s at 29.97 -> 120)."""
    return max(1, int(round(Fraction(str(seconds)) * parse_rate(fps))))


def pan_zoom_frames(image: np.ndarray, frames: int, size_wh: tuple[int, int], *, zoom: float = 1.35):
    """Yield `frames` RGB frames of `size_wh`: a window of the output's aspect ratio that zooms in by `zoom`
    while it pans from the left/top of `image` to its right/bottom, with smooth (cosine) easing."""
    import cv2

    out_w, out_h = size_wh
    img_h, img_w = image.shape[:2]
    aspect = out_w / out_h
    full_w = min(img_w, img_h * aspect)  # the largest window of the output aspect inside the image
    for i in range(frames):
        t = 0.5 - 0.5 * np.cos(np.pi * i / max(1, frames - 1))  # 0 -> 1, eased
        win_w = full_w / (1 + (zoom - 1) * t)
        win_h = win_w / aspect
        x0 = (img_w - win_w) * t
        y0 = (img_h - win_h) * (0.5 + 0.5 * (t - 0.5))
        # an affine map from the window to the output: sub-pixel motion, no jitter
        scale = out_w / win_w
        matrix = np.array([[scale, 0, -x0 * scale], [0, scale, -y0 * scale]], np.float32)
        yield cv2.warpAffine(image, matrix, (out_w, out_h), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REFLECT)


def make_sample_video(image_path: str | Path, out_path: str | Path, *, seconds: float = 4,
                      fps: float | str | Fraction = SAMPLE_FPS, size_wh: tuple[int, int] = SAMPLE_SIZE_WH,
                      zoom: float = 1.35) -> Path:
    """Make a pan-and-zoom video of an image.

    Args:
        image_path: any image OpenCV reads (e.g. ``sample/face-mask/images/*.jpg``).
        out_path: the ``.mp4`` to write (atomically).
        seconds: length; the video has exactly ``sample_frame_count(seconds, fps)`` frames.
        fps: exact frame rate (default 30000/1001).
        size_wh: frame size; odd sides are padded by one pixel by the writer
            (output ``maskdetect.infer.video.even_size(*size_wh)``).
        zoom: how far it zooms in by the end.

    Returns:
        `out_path`.
    """
    from maskdetect.infer.sources import read_image

    rate = parse_rate(fps)
    image = read_image(image_path)
    frames = sample_frame_count(seconds, rate)
    with VideoWriter(out_path, rate, size_wh) as writer:
        for frame in pan_zoom_frames(image, frames, size_wh, zoom=zoom):
            writer.write(frame)
    return Path(out_path)

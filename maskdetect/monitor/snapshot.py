"""The snapshot an alert carries: the frame that raised it as JPEG bytes, its faces pixelated when the run asks
for privacy, made only when a hook takes it (:attr:`maskdetect.monitor.hooks.HookRunner.wants_snapshot`).

Example:
    >>> import numpy as np
    >>> frame = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    >>> jpeg = alert_snapshot(frame, [[20, 30, 60, 90]], blur_faces=True)
    >>> jpeg[:3] == b"\\xff\\xd8\\xff"
    True
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

#: Blocks across a face when it is pixelated: too few for anyone to be recognised.
PRIVACY_BLOCKS = 6


def pixelate_faces(frame_rgb: np.ndarray, boxes_xyxy: Sequence[Sequence[float]] | np.ndarray,
                   *, margin: float = 0.15) -> np.ndarray:
    """A copy of `frame_rgb` with each box (grown by `margin` of its size on every side) pixelated to
    :data:`PRIVACY_BLOCKS` blocks across, then lightly blurred."""
    import cv2

    out = np.array(frame_rgb, dtype=np.uint8, copy=True)
    height, width = out.shape[:2]
    for x1, y1, x2, y2 in np.asarray(boxes_xyxy, dtype=float).reshape(-1, 4):
        grow_x, grow_y = margin * (x2 - x1), margin * (y2 - y1)
        left, top = max(0, int(x1 - grow_x)), max(0, int(y1 - grow_y))
        right, bottom = min(width, int(np.ceil(x2 + grow_x))), min(height, int(np.ceil(y2 + grow_y)))
        if right - left < 1 or bottom - top < 1:
            continue
        face = out[top:bottom, left:right]
        small = cv2.resize(face, (min(PRIVACY_BLOCKS, face.shape[1]), min(PRIVACY_BLOCKS, face.shape[0])),
                           interpolation=cv2.INTER_AREA)
        out[top:bottom, left:right] = cv2.resize(small, (face.shape[1], face.shape[0]),
                                                 interpolation=cv2.INTER_NEAREST)
    return out


def alert_snapshot(frame_rgb: np.ndarray, boxes_xyxy: Sequence[Sequence[float]] | np.ndarray | None = None, *,
                   blur_faces: bool = False, max_side: int = 1280, quality: int = 85) -> bytes:
    """JPEG bytes of an RGB ``uint8`` frame, shrunk to at most `max_side` pixels on its longer side, with the
    faces at `boxes_xyxy` pixelated if `blur_faces` (before shrinking, so no detail survives)."""
    import cv2

    frame = np.asarray(frame_rgb)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"alert_snapshot needs an RGB uint8 (H, W, 3) frame, got {frame.dtype} {frame.shape}")
    if blur_faces and boxes_xyxy is not None:
        frame = pixelate_faces(frame, boxes_xyxy)
    scale = max_side / max(frame.shape[:2])
    if scale < 1:
        frame = cv2.resize(frame, (round(frame.shape[1] * scale), round(frame.shape[0] * scale)),
                           interpolation=cv2.INTER_AREA)
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("OpenCV could not encode the alert snapshot as JPEG")
    return jpeg.tobytes()

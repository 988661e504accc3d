"""Drawing detections on frames. Annotators take their style in ``__init__`` and return a new frame from
``annotate(frame, detections)``; the input frame is never modified.

Frames are RGB ``uint8`` arrays ``(H, W, 3)`` (what :class:`maskdetect.infer.predictor.Predictor` and
:mod:`maskdetect.infer.video` use). Colours are RGB too.

Label text is ``"#<track id> <class> <score>"`` (``"#7 without_mask 0.91"``); the ``#id`` part only once the
detections are tracked (and not for ``tracker_id == -1``, a face the tracker has not confirmed yet). When a tracker has put ``data["smoothed_class_id"]`` on the detections, that class
(stable over frames) is the one shown and coloured.

Example:
    >>> annotator = FrameAnnotator(class_names=["with_mask", "without_mask", "mask_weared_incorrect"])
    >>> out = annotator.annotate(frame, detections, banner="ALERT: 2 faces without a mask")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:  # annotations only: Detections.annotate() calls this module
    from maskdetect.detections import Detections

#: RGB colour per class name; other classes get a colour from `PALETTE`.
CLASS_COLORS: dict[str, tuple[int, int, int]] = {
    "with_mask": (46, 204, 64),
    "without_mask": (230, 40, 40),
    "mask_weared_incorrect": (255, 165, 0),
}
PALETTE: tuple[tuple[int, int, int], ...] = ((0, 116, 217), (177, 13, 201), (57, 204, 204), (255, 220, 0),
                                            (133, 20, 75), (61, 153, 112))


def display_class_ids(detections: Detections) -> np.ndarray:
    """Class ids to show: the tracker's smoothed class when present, else the detector's."""
    smoothed = detections.data.get("smoothed_class_id")
    if smoothed is None:
        return detections.class_id
    smoothed = np.asarray(smoothed)
    valid = np.array([v is not None and np.isfinite(float(v)) and v >= 0 for v in smoothed], bool) \
        if smoothed.dtype == object else (smoothed >= 0)
    return np.where(valid, smoothed, detections.class_id).astype(np.int64)


def _check_frame(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 frame (H, W, 3), got {frame.shape} {frame.dtype}")
    return frame


def _scale(frame: np.ndarray) -> float:
    """Style scale relative to a 720p frame, so text stays readable from 320 px to 4K."""
    return max(0.4, min(frame.shape[:2]) / 720)


class BoxAnnotator:
    """Rectangles around the detections, coloured by class.

    Args:
        class_names: names by 0-based class id (for `CLASS_COLORS`).
        thickness: line width in pixels; None scales with the frame size.
        colors: ``{class_name: (r, g, b)}`` overriding `CLASS_COLORS`.
    """

    def __init__(self, class_names: Sequence[str], *, thickness: int | None = None,
                 colors: dict[str, tuple[int, int, int]] | None = None) -> None:
        self.class_names = list(class_names)
        self.thickness = thickness
        self.colors = {**CLASS_COLORS, **(colors or {})}

    def color(self, class_id: int) -> tuple[int, int, int]:
        name = self.class_names[class_id] if 0 <= class_id < len(self.class_names) else str(class_id)
        return self.colors.get(name, PALETTE[class_id % len(PALETTE)])

    def annotate(self, frame: np.ndarray, detections: Detections) -> np.ndarray:
        import cv2

        out = _check_frame(frame).copy()
        thickness = self.thickness or max(1, round(2 * _scale(out)))
        for (x1, y1, x2, y2), class_id in zip(detections.xyxy, display_class_ids(detections)):
            cv2.rectangle(out, (int(round(x1)), int(round(y1))), (int(round(x2)), int(round(y2))),
                          self.color(int(class_id)), thickness, cv2.LINE_AA)
        return out


class LabelAnnotator:
    """A filled label above each box: ``"#id class score"``.

    Args:
        class_names: names by 0-based class id.
        text_scale: OpenCV font scale; None scales with the frame size.
        show_score: append the score.
    """

    def __init__(self, class_names: Sequence[str], *, text_scale: float | None = None, show_score: bool = True,
                 colors: dict[str, tuple[int, int, int]] | None = None) -> None:
        self.class_names = list(class_names)
        self.text_scale = text_scale
        self.show_score = show_score
        self._boxes = BoxAnnotator(class_names, colors=colors)

    def text(self, detections: Detections, i: int) -> str:
        class_id = int(display_class_ids(detections)[i])
        name = self.class_names[class_id] if 0 <= class_id < len(self.class_names) else str(class_id)
        parts = []
        if detections.tracker_id is not None and detections.tracker_id[i] >= 0:  # -1: not yet confirmed
            parts.append(f"#{int(detections.tracker_id[i])}")
        parts.append(name)
        if self.show_score:
            parts.append(f"{float(detections.confidence[i]):.2f}")
        return " ".join(parts)

    def annotate(self, frame: np.ndarray, detections: Detections) -> np.ndarray:
        import cv2

        out = _check_frame(frame).copy()
        height, width = out.shape[:2]
        scale = self.text_scale or 0.6 * _scale(out)
        weight = max(1, round(scale * 2))
        class_ids = display_class_ids(detections)
        for i, (x1, y1, _, _) in enumerate(detections.xyxy):
            text = self.text(detections, i)
            (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, weight)
            pad = max(2, th // 4)
            left = int(np.clip(x1, 0, max(0, width - tw - 2 * pad)))
            top = int(y1) - th - base - 2 * pad
            if top < 0:  # no room above the box: put the label inside it
                top = int(max(0, y1))
            bottom = min(height - 1, top + th + base + 2 * pad)
            color = self._boxes.color(int(class_ids[i]))
            cv2.rectangle(out, (left, top), (left + tw + 2 * pad, bottom), color, cv2.FILLED)
            text_color = (0, 0, 0) if sum(color) > 380 else (255, 255, 255)
            cv2.putText(out, text, (left + pad, bottom - base - pad), cv2.FONT_HERSHEY_SIMPLEX, scale, text_color,
                        weight, cv2.LINE_AA)
        return out


class BannerAnnotator:
    """A text banner across the top of the frame (alerts), on a translucent dark strip.

    Args:
        color: text colour (RGB).
        opacity: opacity of the strip.
    """

    def __init__(self, *, color: tuple[int, int, int] = (255, 80, 80), opacity: float = 0.6,
                 text_scale: float | None = None) -> None:
        self.color = color
        self.opacity = opacity
        self.text_scale = text_scale

    def annotate(self, frame: np.ndarray, text: str | None) -> np.ndarray:
        import cv2

        out = _check_frame(frame).copy()
        if not text:
            return out
        scale = self.text_scale or 0.8 * _scale(out)
        weight = max(1, round(scale * 2))
        (_, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, weight)
        strip = min(out.shape[0], th + base + 2 * max(4, th // 2))
        out[:strip] = (out[:strip].astype(np.float32) * (1 - self.opacity)).astype(np.uint8)
        cv2.putText(out, text, (max(4, th // 2), strip - base - max(4, th // 2) // 2), cv2.FONT_HERSHEY_SIMPLEX,
                    scale, self.color, weight, cv2.LINE_AA)
        return out


class FrameAnnotator:
    """Boxes, labels and an optional banner in one call: what `predict` draws on every image and frame."""

    def __init__(self, class_names: Sequence[str], *, thickness: int | None = None,
                 text_scale: float | None = None, show_score: bool = True,
                 colors: dict[str, tuple[int, int, int]] | None = None) -> None:
        self.boxes = BoxAnnotator(class_names, thickness=thickness, colors=colors)
        self.labels = LabelAnnotator(class_names, text_scale=text_scale, show_score=show_score, colors=colors)
        self.banner = BannerAnnotator()

    def annotate(self, frame: np.ndarray, detections: Detections, banner: str | None = None) -> np.ndarray:
        out = self.labels.annotate(self.boxes.annotate(frame, detections), detections)
        return self.banner.annotate(out, banner) if banner else out

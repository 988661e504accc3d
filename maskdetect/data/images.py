"""Turning an :class:`Item` into a :class:`Sample`: read and fully decode the image, make it an RGB JPEG, clip
the boxes, apply the class map and the blur filter. Runs in worker threads (PIL and OpenCV release the GIL).
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from maskdetect.data.records import Item, Sample, Skip

JPEG_QUALITY = 95
OUTSIDE_TOLERANCE_PX = 2.0  # boxes past the edge by more than this are an error under strict=True
BLUR_SIDE_PX = 64
DEFAULT_BLUR_THRESHOLD = 100.0  # variance of the Laplacian of a face crop; see README/bench for how it was chosen


@dataclass
class Loaded:
    """What a worker made of one Item: a Sample (or a Skip), and the boxes it dropped or clipped."""

    sample: Sample | None = None
    skip: Skip | None = None
    dropped: list[dict] = field(default_factory=list)  # {"item", "box", "reason", "is_error"}
    clipped: list[dict] = field(default_factory=list)  # {"item", "box", "outside_px"}
    warnings: list[str] = field(default_factory=list)


def decode_image(data: bytes) -> tuple[bytes, int, int, bool, "np.ndarray"]:
    """Check ``data`` decodes completely; return ``(jpeg_bytes, width, height, converted, gray)``.

    JPEG files in RGB or greyscale keep their original bytes; anything else (PNG, RGBA, palette, CMYK, 16-bit,
    BMP, ...) becomes an RGB JPEG of quality 95, transparent pixels composited on white.

    Raises:
        ValueError: the bytes are not a complete image PIL can decode (message says why).
    """
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = im.format
            im.load()
            width, height = im.size
            if width < 1 or height < 1:
                raise ValueError(f"image has no pixels ({width}x{height})")
            keep = fmt == "JPEG" and im.mode in ("RGB", "L")
            rgb = im if im.mode == "RGB" else _to_rgb(im)
            gray = np.asarray(rgb.convert("L"))
            if keep:
                return data, width, height, False, gray
            out = io.BytesIO()
            rgb.save(out, format="JPEG", quality=JPEG_QUALITY)
            return out.getvalue(), width, height, True, gray
    except ValueError:
        raise
    except Exception as exc:  # PIL raises many types (OSError, SyntaxError, struct.error, DecompressionBomb...)
        raise ValueError(f"{type(exc).__name__}: {exc}") from None


#: EXIF orientations that swap width and height (a quarter turn, with or without a mirror).
QUARTER_TURNS = frozenset({5, 6, 7, 8})


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation tag of an image (1 = upright, also when there is none or it cannot be read)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            value = im.getexif().get(0x0112, 1)
    except Exception:  # unreadable images are reported by decode_image
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def upright_xy(x: float, y: float, orientation: int, width: int, height: int) -> tuple[float, float]:
    """A point of the stored (raw) `width` x `height` pixels, in the picture turned upright by its EXIF
    `orientation` (as ``PIL.ImageOps.exif_transpose``, OpenCV's ``imread`` and so ``predict`` show it)."""
    return {1: (x, y), 2: (width - x, y), 3: (width - x, height - y), 4: (x, height - y), 5: (y, x),
            6: (height - y, x), 7: (height - y, width - x), 8: (y, width - x)}[orientation]


def decode_upright(data: bytes) -> tuple[bytes, int, int, "np.ndarray"]:
    """An EXIF-rotated image turned upright: ``(rgb_jpeg_without_orientation, width, height, gray)``.

    Raises:
        ValueError: the bytes are not a complete image PIL can decode.
    """
    from PIL import Image, ImageOps

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            turned = ImageOps.exif_transpose(im)
            rgb = turned if turned.mode == "RGB" else _to_rgb(turned)
            out = io.BytesIO()
            rgb.save(out, format="JPEG", quality=JPEG_QUALITY)
            return out.getvalue(), rgb.width, rgb.height, np.asarray(rgb.convert("L"))
    except Exception as exc:
        raise ValueError(f"{type(exc).__name__}: {exc}") from None


def _exif_frame(item: Item, orientation: int, raw_wh: tuple[int, int]) -> str | None:
    """Which picture `item`'s boxes were drawn on: ``"raw"`` (the stored pixels), ``"upright"`` (as shown), or
    None when the annotation cannot tell (no declared size, a square image, or a mirror/half turn that keeps
    the size)."""
    upright_wh = raw_wh[::-1] if orientation in QUARTER_TURNS else raw_wh
    if item.declared_wh is None or upright_wh == raw_wh:
        return None
    if item.declared_wh == upright_wh:
        return "upright"
    return "raw" if item.declared_wh == raw_wh else None


def _to_rgb(im):
    from PIL import Image

    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        span = max(float(arr.max() - arr.min()), 1e-9)
        im = Image.fromarray(((arr - arr.min()) / span * 255).astype(np.uint8))
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        im = im.convert("RGBA")
        if im.getchannel("A").getextrema() != (255, 255):
            background = Image.new("RGBA", im.size, (255, 255, 255, 255))
            im = Image.alpha_composite(background, im)
    return im.convert("RGB")


def laplacian_variance(gray: np.ndarray, xyxy: tuple[float, float, float, float]) -> float:
    """Blur score of a face: variance of the Laplacian of its crop (lower is blurrier; 0 for an empty crop).

    Crops longer than ``BLUR_SIDE_PX`` are first shrunk to that size, so a large, sharp but smooth face is not
    mistaken for a blurred one (the raw variance falls with the crop's scale).
    """
    import cv2

    x1, y1, x2, y2 = (int(round(v)) for v in xyxy)
    crop = gray[max(y1, 0):max(y2, 0), max(x1, 0):max(x2, 0)]
    if crop.size == 0:
        return 0.0
    longest = max(crop.shape)
    if longest > BLUR_SIDE_PX:  # large faces are judged at the scale of a typical face, not their own
        scale = BLUR_SIDE_PX / longest
        size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(np.ascontiguousarray(crop), cv2.CV_64F).var())


def load_item(item: Item, class_map: dict[str, str], classes: frozenset[str] | None,
              min_blur: float | None) -> Loaded:
    """Read, check and convert one item. Never raises for bad data: problems come back in the result."""
    out = Loaded()
    try:
        data = item.image if isinstance(item.image, bytes) else Path(item.image).read_bytes()
    except OSError as exc:
        out.skip = Skip(item.key, f"cannot read image {item.image} ({exc.strerror or exc})", "Check the file.")
        return out
    what = "image" if isinstance(item.image, bytes) else f"image {item.image}"
    try:
        jpeg, width, height, converted, gray = decode_image(data)
    except ValueError as exc:
        out.skip = Skip(item.key, f"corrupt or truncated {what} ({exc})", "Replace the image or delete its annotation.")
        return out
    orientation = exif_orientation(data)
    frame = None
    if orientation != 1:  # predict shows this image turned; training must see the same picture
        frame = _exif_frame(item, orientation, (width, height))
        if frame is None:
            out.skip = Skip(item.key, f"{what} has EXIF orientation {orientation} (shown turned or mirrored) and "
                            f"the annotation does not say which picture its boxes were drawn on",
                            "Turn the image upright for good (e.g. `exiftran -ai` or `mogrify -auto-orient`), check "
                            "its boxes on that picture, and convert again.")
            return out
        raw_wh = (width, height)
        jpeg, width, height, gray = decode_upright(data)
        converted = True
        out.warnings.append(f"{item.key}: EXIF orientation {orientation}: the image is stored upright, as predict "
                            f"shows it; its boxes were read on the {frame} picture")
    if frame is None and item.declared_wh and item.declared_wh != (width, height):
        out.warnings.append(f"{item.key}: annotation says {item.declared_wh[0]}x{item.declared_wh[1]}, image is "
                            f"{width}x{height}; boxes are read against the real image")
    for desc, reason in item.dropped:
        out.dropped.append({"item": item.key, "box": desc, "reason": reason, "is_error": True})
    names: list[str] = []
    boxes: list[tuple[float, float, float, float]] = []
    blur: list[float] = []
    for i, box in enumerate(item.boxes):
        x1, y1, x2, y2 = box.xyxy
        if box.normalised:
            x1, x2 = round(x1 * width, 6), round(x2 * width, 6)
            y1, y2 = round(y1 * height, 6), round(y2 * height, 6)
        if frame == "raw" and all(math.isfinite(v) for v in (x1, y1, x2, y2)):
            (ax, ay), (bx, by) = (upright_xy(x, y, orientation, *raw_wh) for x, y in ((x1, y1), (x2, y2)))
            x1, y1, x2, y2 = min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)
        name = class_map.get(box.name, box.name)
        desc = f"box {i} {box.name!r} [{_fmt(x1)}, {_fmt(y1)}, {_fmt(x2)}, {_fmt(y2)}]"
        if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
            out.dropped.append({"item": item.key, "box": desc, "reason": "non-finite coordinates", "is_error": True})
            continue
        if classes is not None and name not in classes:
            out.dropped.append({"item": item.key, "box": desc, "is_error": True,
                                "reason": f"unknown class {name!r} (not in {sorted(classes)})"})
            continue
        outside = max(0.0, -x1, -y1, x2 - width, y2 - height)
        cx1, cy1 = min(max(x1, 0.0), width), min(max(y1, 0.0), height)
        cx2, cy2 = min(max(x2, 0.0), width), min(max(y2, 0.0), height)
        if cx2 <= cx1 or cy2 <= cy1:
            out.dropped.append({"item": item.key, "box": desc, "is_error": True,
                                "reason": f"zero area after clipping to the {width}x{height} image"})
            continue
        if outside > 0:
            out.clipped.append({"item": item.key, "box": desc, "outside_px": round(outside, 3)})
        score = laplacian_variance(gray, (cx1, cy1, cx2, cy2))
        if min_blur is not None and score < min_blur:
            out.dropped.append({"item": item.key, "box": desc, "is_error": False,
                                "reason": f"blurred (Laplacian variance {score:.1f} < {min_blur:g})"})
            continue
        names.append(name)
        boxes.append((cx1, cy1, cx2, cy2))
        blur.append(score)
    if not boxes:
        filtered = bool(out.dropped) and all(not d["is_error"] for d in out.dropped)
        reason = "every face is below the blur threshold" if filtered else "no usable objects (empty annotation)"
        out.skip = Skip(item.key, reason, "" if filtered else "Annotate the faces or remove the image.",
                        is_error=not filtered)
        return out
    out.sample = Sample(key=item.key, filename=item.filename, jpeg=jpeg, sha256=hashlib.sha256(data).hexdigest(),
                        width=width, height=height, names=names, xyxy=boxes, blur=blur, converted=converted,
                        split=item.split)
    return out


def _fmt(v: float) -> str:
    return f"{v:g}"

"""The webcam of the browser running a notebook on Google Colab, as a frame source (beside the other sources of
:mod:`maskdetect.infer.sources`): :class:`BrowserWebcam` gives frames through the page's JavaScript and shows the
annotated ones back; :func:`run_browser_webcam` runs it through the one frame loop.

Example:
    >>> summary = run_browser_webcam(predictor, camera=BrowserWebcam(width=640), max_frames=300)  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, Iterator


# -- the page's side -------------------------------------------------------------------------------------------
# The page keeps one <video> fed by getUserMedia and an <img> that shows the annotated frame the kernel sent
# back; each call of maskdetectFrame(overlay) returns the newest camera frame as a JPEG data URL, or "" once
# the user pressed Stop (then the camera is released).
WEBCAM_JS = r"""
var maskdetectCam = null;
async function maskdetectStart(width, quality) {
  if (maskdetectCam) { return true; }
  const box = document.createElement('div');
  const stop = document.createElement('button');
  stop.textContent = 'Stop';
  const status = document.createElement('span');
  status.textContent = ' starting the camera...';
  const video = document.createElement('video');
  video.style.display = 'none';
  video.setAttribute('playsinline', '');
  const shown = document.createElement('img');
  shown.style.maxWidth = width + 'px';
  box.appendChild(stop); box.appendChild(status); box.appendChild(document.createElement('br'));
  box.appendChild(shown); box.appendChild(video);
  document.body.appendChild(box);
  const stream = await navigator.mediaDevices.getUserMedia({video: {width: {ideal: width}}, audio: false});
  video.srcObject = stream;
  await video.play();
  google.colab.output.setIframeHeight(document.documentElement.scrollHeight, true);
  const canvas = document.createElement('canvas');
  maskdetectCam = {box, video, shown, canvas, status, stream, quality, stopped: false};
  stop.onclick = () => { maskdetectCam.stopped = true; };
  status.textContent = ' camera on: press Stop to end';
  return true;
}
async function maskdetectFrame(overlay) {
  const cam = maskdetectCam;
  if (!cam) { return ''; }
  if (overlay) { cam.shown.src = overlay; }
  if (cam.stopped) {
    cam.stream.getTracks().forEach(t => t.stop());
    cam.status.textContent = ' camera off';
    maskdetectCam = null;
    return '';
  }
  const w = cam.video.videoWidth, h = cam.video.videoHeight;
  cam.canvas.width = w; cam.canvas.height = h;
  cam.canvas.getContext('2d').drawImage(cam.video, 0, 0, w, h);
  return cam.canvas.toDataURL('image/jpeg', cam.quality);
}
"""


def decode_data_url(data_url: str):
    """An RGB uint8 array from a ``data:image/...;base64,...`` URL."""
    import io

    import numpy as np
    from PIL import Image

    header, _, payload = data_url.partition(",")
    if not header.startswith("data:image/") or ";base64" not in header:
        raise ValueError("not a base64 image data URL")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(payload))).convert("RGB"))


def encode_data_url(image, quality: int = 80) -> str:
    """A JPEG data URL of an RGB uint8 array (to show it in the page)."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class BrowserWebcam:
    """The webcam of the browser running Colab, frame by frame (JavaScript ``getUserMedia``).

    The kernel has no camera of its own on Colab: each :meth:`frames` step asks the page for its newest frame
    (a JPEG over ``google.colab.output.eval_js``), so frames are never queued (newest-frame semantics, at the
    round trip's rate). :meth:`show` sends an annotated frame back; the page shows it with the next request.
    The user ends the capture with the Stop button (or `max_frames` is reached).

    Example (:func:`run_browser_webcam` runs it through the package's frame loop):
        >>> summary = run_browser_webcam(predictor, camera=BrowserWebcam(width=640), max_frames=300)  # doctest: +SKIP
    """

    def __init__(self, width: int = 640, quality: float = 0.8) -> None:
        self.width = width
        self.quality = quality
        self._overlay = ""
        self._started = False

    def _eval(self, expression: str):
        from google.colab import output  # type: ignore[import-not-found]

        return output.eval_js(expression)

    def start(self) -> None:
        from IPython.display import Javascript, display

        display(Javascript(WEBCAM_JS))
        self._started = bool(self._eval(f"maskdetectStart({int(self.width)}, {float(self.quality)})"))

    def read(self):
        """The newest frame (RGB uint8), or None once the user pressed Stop."""
        if not self._started:
            self.start()
        data_url = self._eval(f"maskdetectFrame({json.dumps(self._overlay)})")
        self._overlay = ""
        if not data_url:
            self._started = False
            return None
        return decode_data_url(data_url)

    def show(self, image) -> None:
        """Show `image` (RGB uint8) in the page at the next :meth:`read`."""
        self._overlay = encode_data_url(image)

    def frames(self, max_frames: int | None = None) -> Iterator[Any]:
        """Yield frames until Stop is pressed or `max_frames` were read (the camera is then released)."""
        count = 0
        try:
            while max_frames is None or count < max_frames:
                frame = self.read()
                if frame is None:
                    return
                count += 1
                yield frame
        finally:
            if self._started:
                self._eval("(maskdetectCam && (maskdetectCam.stopped = true), maskdetectFrame(''))")
                self._started = False


def run_browser_webcam(predictor, *, monitor=None, record_path: str | Path | None = None,
                       json_path: str | Path | None = None, record_fps: float = 10.0, max_frames: int | None = None,
                       width: int = 640, camera: BrowserWebcam | None = None):
    """Detect live in the browser's webcam on Colab, through the package's one frame loop
    (:func:`maskdetect.infer.loop.predict_source`): each frame is detected, tracked/alerted by `monitor`, drawn
    with the FPS and alert banner, shown in the page, recorded in real time as H.264 at `record_fps` (with
    `record_path`) and written as JSON records (with `json_path`). Ends when the user presses Stop or after
    `max_frames`.

    The monitor, if any, is told `record_fps` as the source's frame rate (the page's round trip sets the real
    pace; frames are timed on arrival).

    Returns:
        A :class:`maskdetect.infer.loop.PredictionSummary` (``monitor``: what ``monitor.close`` returned).
    """
    from maskdetect.infer.loop import predict_source
    from maskdetect.infer.sources import CameraFrames

    camera = camera or BrowserWebcam(width=width)
    return predict_source(predictor, CameraFrames(camera, fps=record_fps), record_path, json_path=json_path,
                          monitor=monitor, max_frames=max_frames, show_fps=True, progress=False)


__all__ = ["BrowserWebcam", "WEBCAM_JS", "decode_data_url", "encode_data_url", "run_browser_webcam"]

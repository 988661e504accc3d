"""A desktop window for ``--show`` where OpenCV has none: the pinned ``opencv-python-headless`` (which servers and
Colab need, and which the GUI ``opencv-python`` would clash with in one venv) has no GUI, so frames go to a Tk
window instead (Python's own ``tkinter`` and Pillow's ``ImageTk``). q or Esc stops, as in OpenCV's window; closing
the window stops too."""

from __future__ import annotations

import logging
import time

import numpy as np

logger = logging.getLogger(__name__)
STOP_KEYS = ("q", "Q", "Escape")


def why_no_tk() -> str | None:
    """Why no Tk window can open here, with the fix (None when one can): tkinter missing from this Python (the
    display is :func:`~maskdetect.infer.sinks.why_no_window`'s to check)."""
    try:
        import tkinter  # noqa: F401
        from PIL import ImageTk  # noqa: F401
    except ImportError as exc:
        return (f"this Python has no tkinter ({exc}); on Debian or Ubuntu: sudo apt install python3-tk, "
                "or pip install opencv-python in a venv without opencv-python-headless")
    return None


class TkWindow:
    """One window showing RGB frames, created on the first frame (in the thread that shows them, as Tk wants).

    Args:
        title: the window's title.
    """

    def __init__(self, title: str = "maskdetect") -> None:
        self.title = title
        self.stopped = False
        self.shown = 0
        self._root = self._label = self._key = None

    def _open(self) -> None:
        import tkinter

        self._root = tkinter.Tk()
        self._root.title(self.title)
        self._label = tkinter.Label(self._root, borderwidth=0, highlightthickness=0)
        self._label.pack()
        self._root.bind("<Key>", self._on_key)
        self._root.protocol("WM_DELETE_WINDOW", self._on_close)
        self._root.focus_force()  # keys reach it at once, as OpenCV's window
        logger.info("showing the frames in a Tk window (this OpenCV is the headless build); q or Esc stops")

    def _on_key(self, event) -> None:
        self._key = event.keysym
        if event.keysym in STOP_KEYS:
            self.stopped = True

    def _on_close(self) -> None:
        self.stopped = True

    def show(self, frame: np.ndarray, *, hold: bool = False) -> bool:
        """Show an RGB frame; with `hold`, wait for a key (q or Esc: stop). Returns False once the user asked to
        stop (q, Esc or the window closed)."""
        from PIL import Image, ImageTk

        if self.stopped:
            return False
        if self._root is None:
            self._open()
        image = ImageTk.PhotoImage(Image.fromarray(np.ascontiguousarray(frame)), master=self._root)
        self._label.configure(image=image)
        self._label.image = image  # Tk keeps no reference of its own
        self._key = None
        self._root.update()
        self.shown += 1
        while hold and self._key is None and not self.stopped:
            time.sleep(0.02)
            self._root.update()
        return not self.stopped

    def close(self) -> None:
        if self._root is not None:
            try:
                self._root.destroy()
            except Exception as exc:  # the display may be gone already: nothing left to close
                logger.debug("closing the window: %s", exc)
            self._root = None


__all__ = ["STOP_KEYS", "TkWindow", "why_no_tk"]

"""What a user sees: our progress bars, results and log records; native libraries' log lines only with ``-v``.

TensorFlow writes its C++ log lines (``cudart_stub.cc: Could not find cuda drivers``, ``failed call to cuInit``,
``cpu_feature_guard.cc``, the absl ``All log messages before absl::InitializeLog()`` banner) straight to file
descriptor 2, before and regardless of ``TF_CPP_MIN_LOG_LEVEL``; its Python side adds deprecation warnings and
``tensorflow``/``absl`` log records. :func:`configure` hides all of that at the default verbosity:

* fd 2 goes through a pipe whose reader thread drops lines in TensorFlow's C++ log format (``I1122 ...
  file.cc:12] ...``) of severity I and W, and the known harmless E lines of a machine without a GPU; LiteRT's
  ``INFO:`` lines (``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.``, written by its native minimal
  logger when an interpreter is made); OpenCV's native ``[ WARN:0@0.1] ...`` and ``[ INFO:...]`` lines (also
  turned off at the source: ``OPENCV_LOG_LEVEL=ERROR`` unless the user set it). Anything else (F lines, other
  errors, OpenCV's ``[ERROR:...]``, ffmpeg's messages) is passed on untouched. Python's own ``sys.stderr`` (progress
  bars, tracebacks) keeps writing to the real stderr directly, so bars are never held back by line buffering.
* Deprecation/future warnings and warnings raised in TensorFlow, Keras, the OD API and absl are ignored.
* The ``tensorflow`` and ``absl`` loggers show errors only.

With ``verbose=True`` nothing is hidden (and ``TF_CPP_MIN_LOG_LEVEL`` is 0 unless the user set it).

Example:
    >>> from maskdetect import logs
    >>> logs.configure(verbose=False)   # the CLI does this; a notebook may too   # doctest: +SKIP
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import sys
import threading
import warnings

#: A TensorFlow/absl C++ log line: absl's (TF 2.21: severity, MMDD or 0000, time, thread id, file:line]) or
#: TensorFlow's own older form (TF 2.20, Colab's: date time: severity file:line]).
TF_LOG_LINE = re.compile(rb"^(?:(?P<severity>[IWEF])\d{4} \d\d:\d\d:\d+\.\d+\s+\d+\s+|"
                         rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: (?P<severity_tf>[IWEF]) )[\w./-]+:\d+\] ")
#: Lines that are noise whatever their form (absl's banner, cpu_feature_guard's second line, LiteRT's INFO lines
#: such as "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.").
NOISE_LINES = (
    rb"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    rb"To enable the following instructions:",
    rb"INFO: ",
)
#: OpenCV's native log line below ERROR: ``[ WARN:0@0.012] global loadsave.cpp:268 findDecoder ...``.
OPENCV_LOG_LINE = re.compile(rb"^\[ ?(?:WARN|INFO|DEBUG|VERBOSE)(?::\d+)?(?:@\d+\.\d+)?\] ")
#: Error lines that only say "no GPU here" or "registered twice"; every other E line is shown.
HARMLESS_ERRORS = re.compile(rb"cuInit|cuda drivers|Unable to register cu(DNN|FFT|BLAS) factory|"
                             rb"computation placer already registered|kernel version")
#: Python modules whose warnings are noise to a user of maskdetect.
NOISY_MODULES = r"(tensorflow|tf_keras|keras|object_detection|official|absl|tf_slim|google\.protobuf|pycocotools)"

_filter: "_NativeStderrFilter | None" = None
#: ``OPENCV_LOG_LEVEL`` as the user set it (None: unset; we then set ERROR unless -v).
USER_OPENCV_LOG_LEVEL = os.environ.get("OPENCV_LOG_LEVEL")


def is_noise(line: bytes) -> bool:
    """True for a line of TensorFlow's native start-up noise (see the module doc)."""
    stripped = line.strip()
    if any(stripped.startswith(noise) for noise in NOISE_LINES) or OPENCV_LOG_LINE.match(stripped):
        return True
    match = TF_LOG_LINE.match(stripped)
    if not match:
        return False
    severity = match.group("severity") or match.group("severity_tf")
    return severity in (b"I", b"W") or (severity == b"E" and HARMLESS_ERRORS.search(stripped) is not None)


class _NativeStderrFilter:
    """Puts a pipe on fd 2 and forwards what is not noise to the real stderr (a duplicate of the old fd 2)."""

    def __init__(self) -> None:
        sys.stderr.flush()
        self.target = os.dup(2)
        read_fd, write_fd = os.pipe()
        os.dup2(write_fd, 2)
        os.close(write_fd)
        self._read = read_fd
        self._thread = threading.Thread(target=self._forward, name="maskdetect-stderr-filter", daemon=True)
        self._thread.start()
        if _writes_to_fd2(sys.stderr):
            # Python's stderr bypasses the filter: tqdm's \r updates must not wait for a newline
            sys.stderr = os.fdopen(os.dup(self.target), "w", buffering=1, encoding=sys.stderr.encoding,
                                   errors="backslashreplace")
        atexit.register(self.close)

    def _forward(self) -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(self._read, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            kept = [line + b"\n" for line in lines if not is_noise(line)]
            if kept:
                os.write(self.target, b"".join(kept))
        if pending and not is_noise(pending):
            os.write(self.target, pending)

    def close(self) -> None:
        """Put the real stderr back on fd 2 and forward what is still in the pipe."""
        try:
            os.dup2(self.target, 2)  # closes the pipe's last write end: the reader sees EOF
        except OSError:
            return
        self._thread.join(timeout=2)


def _writes_to_fd2(stream) -> bool:
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError):
        return False


def configure(verbose: bool = False, *, native: bool = True) -> None:
    """Set the verbosity of maskdetect and of the libraries under it (call once, early: before TensorFlow runs).

    Args:
        verbose: show everything (debug records of ours, TensorFlow's C++ log, all warnings).
        native: filter TensorFlow's C++ lines on fd 2 (default); False leaves fd 2 alone.
    """
    global _filter
    from maskdetect import compat

    if verbose:
        if USER_OPENCV_LOG_LEVEL is None:
            os.environ.pop("OPENCV_LOG_LEVEL", None)
        if compat.USER_TF_CPP_MIN_LOG_LEVEL is None:
            os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        for name in ("tensorflow", "absl"):
            logging.getLogger(name).setLevel(logging.NOTSET)
        warnings.resetwarnings()
        return
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")  # read when cv2 is first imported
    if "cv2" in sys.modules and USER_OPENCV_LOG_LEVEL is None:
        sys.modules["cv2"].utils.logging.setLogLevel(2)  # imported already: 2 = LOG_LEVEL_ERROR
    for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category)
    warnings.filterwarnings("ignore", module=NOISY_MODULES)
    for name in ("tensorflow", "absl"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        from absl import logging as absl_logging  # noqa: WPS433 (an OD API dependency; may be absent)
    except ImportError:
        pass
    else:
        absl_logging.set_verbosity(absl_logging.ERROR)
    if native and _filter is None and os.name == "posix":
        _filter = _NativeStderrFilter()

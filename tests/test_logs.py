"""maskdetect.logs: TensorFlow's native start-up lines and library warnings hidden by default, shown with -v."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import REPO
from maskdetect import logs

STARTUP_NOISE = [
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    b"I0000 00:00:1795934998.951490    5032 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU "
    b"will not be used.",
    b"I0000 00:00:1795934999.050152    5032 cpu_feature_guard.cc:227] This TensorFlow binary is optimized",
    b"To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow",
    b"E0000 00:00:1795935027.047268    5032 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: "
    b"Failed call to cuInit: UNKNOWN ERROR (303)",
    b"W1122 10:11:12.123456   77 tensorflow/core/framework/op_kernel.cc:1830] OP_REQUIRES failed at x.cc:3",
    # TensorFlow 2.20 (Colab's) writes its own older form
    b"2026-11-29 09:07:46.769581: E external/local_xla/xla/stream_executor/cuda/cuda_platform.cc:51] failed call "
    b"to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
    b"2026-11-29 09:07:40.123456: I tensorflow/core/util/port.cc:153] oneDNN custom operations are on.",
    # LiteRT's native minimal logger, when an interpreter is made
    b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
    # OpenCV's native logger below ERROR
    b"[ WARN:0@0.085] global loadsave.cpp:278 findDecoder imread_('x.jpg'): can't open/read file",
    b"[ INFO:0@1.204] global videoio_registry.cpp:232 VideoBackendRegistry VIDEOIO: Enabled backends",
]
KEPT = [
    b"E1122 10:11:12.123456   77 bfc_allocator.cc:485] Allocator (GPU_0_bfc) ran out of memory",
    b"F1122 10:11:12.123456   77 check.cc:12] Check failed: shape.ok()",
    b"2026-11-29 09:07:46.769581: E tensorflow/core/common_runtime/bfc_allocator.cc:485] ran out of memory",
    b"[libx264 @ 0x55] using cpu capabilities: MMX2 SSE2Fast",
    b"train:  50%|#####     | 2/4 [00:03<00:03, 0.6step/s]",
    b"I like masks",
    b"[ERROR:0@0.3] global cap.cpp:643 open VIDEOIO(CV_IMAGES): raised OpenCV exception",
    b"ERROR: Didn't find op for builtin opcode 'CONV_2D'",
    b"INFO model: the bundled default",  # our own log format (no colon)
]


@pytest.mark.parametrize("line", STARTUP_NOISE)
def test_startup_noise_is_recognised(line):
    assert logs.is_noise(line)


@pytest.mark.parametrize("line", KEPT)
def test_everything_else_is_kept(line):
    assert not logs.is_noise(line)


PROGRAM = r"""
import os, sys, warnings
from maskdetect import logs
logs.configure(verbose={verbose})
os.write(2, b"\n".join({noise!r} + {kept!r}) + b"\n")
sys.stderr.write("\rbar 1/2")  # a progress bar's update, no newline
sys.stderr.flush()
warnings.warn("old API", DeprecationWarning)
warnings.warn_explicit("tf noise", UserWarning, "x.py", 1, module="tensorflow.python.ops")
import logging
logging.getLogger("tensorflow").warning("From tensorflow: calling deprecated")
print("result", flush=True)
"""


@pytest.mark.parametrize("verbose", [False, True])
def test_native_lines_python_warnings_and_tf_logger_are_quiet_unless_verbose(verbose):
    code = PROGRAM.format(verbose=verbose, noise=STARTUP_NOISE, kept=KEPT)
    done = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == b"result\n"
    err = done.stderr
    for line in KEPT:
        assert line in err
    assert b"\rbar 1/2" in err
    noisy = [line for line in STARTUP_NOISE if line in err]
    warned = [text for text in (b"old API", b"tf noise", b"From tensorflow") if text in err]
    if verbose:
        assert noisy == STARTUP_NOISE and len(warned) == 3
    else:
        assert noisy == [] and warned == []


# -- the real commands: zero native lines at the default verbosity -----------------------------------------
NATIVE_LINE = re.compile(r"^(INFO: |\[ ?(WARN|INFO)[:\]]|[IW]\d{4} |WARNING: All log messages)", re.M)
IMAGE = REPO / "sample" / "face-mask" / "images" / "maksssksksss104.jpg"


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "maskdetect", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


@pytest.mark.parametrize("verbose", [False, True])
def test_predict_prints_no_native_line_unless_verbose(tmp_path, verbose):
    """LiteRT's XNNPACK line (and any OpenCV or TensorFlow native line) only with -v: ~3 s per run."""
    done = _cli(*(["-v"] if verbose else []), "predict", "--source", str(IMAGE), "--out", "o.jpg", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    native = NATIVE_LINE.findall(done.stderr)
    if verbose:
        assert "INFO: Created TensorFlow Lite XNNPACK delegate" in done.stderr  # the test can see one
    else:
        assert native == [], done.stderr
        assert "o.jpg" in done.stdout


def test_opencv_native_warnings_are_quiet_unless_verbose():
    program = ("import sys, cv2\nfrom maskdetect import logs\nlogs.configure(verbose={verbose})\n"
               "cv2.imread('missing-image.jpg')\nsys.stderr.write('done\\n')\n")
    for verbose, shown in ((False, False), (True, True)):
        done = subprocess.run([sys.executable, "-c", program.format(verbose=verbose)], capture_output=True,
                              text=True, cwd=REPO, timeout=60, env={**os.environ, "OPENCV_LOG_LEVEL": ""})
        assert done.returncode == 0 and "done" in done.stderr, done.stderr
        assert ("[ WARN" in done.stderr) == shown, done.stderr


@pytest.mark.slow
def test_data_inspect_prints_no_native_line(tmp_path):
    """`data inspect` on a 3-image set: TensorFlow starts (its cuInit, cpu_feature_guard and TFRecordDataset
    lines), none reaches the user (~25 s on a quiet machine: one TensorFlow start-up in the subprocess)."""
    from data_fixtures import copy_voc
    from maskdetect.data.convert import convert

    voc = copy_voc(tmp_path / "voc", ["maksssksksss104", "maksssksksss13", "maksssksksss231"])
    convert("voc", voc, tmp_path / "data", split=(1.0, 0.0, 0.0))
    done = _cli("data", "inspect", "data", "--out", "report", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert NATIVE_LINE.findall(done.stderr) == [], done.stderr
    assert "3 of 3 records valid" in done.stdout

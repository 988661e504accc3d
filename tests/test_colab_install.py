"""maskdetect.colab: the install step (standard library only, as Colab runs it), Drive copy and the browser
webcam, with a fake ``google.colab``; and, slow, the install in a fresh venv holding another TensorFlow."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO

from maskdetect import colab

COLAB_SCRIPT = REPO / "maskdetect" / "colab.py"


# --- install plan --------------------------------------------------------------------------------------------
def test_pins_of_the_repository_are_read():
    pins = colab.read_pins(REPO / "requirements.txt")
    assert pins["tensorflow"] == "2.21.0" and pins["tf-keras"] == "2.21.0" and "pyyaml" in pins
    nodeps = colab.read_pins(REPO / "requirements-nodeps.txt")
    assert set(nodeps) >= {"tf-models-research-object-detection", "tf-models-official"}


@pytest.mark.parametrize("line", ["numpy", "numpy>=2", "numpy ~= 2.0", "-e ."])
def test_unpinned_requirements_are_refused(tmp_path, line):
    (tmp_path / "r.txt").write_text(f"# comment\n{line}\n")
    with pytest.raises(ValueError, match="r.txt:2"):
        colab.read_pins(tmp_path / "r.txt")


def fake_repo(tmp_path: Path, deps: str, nodeps: str = "") -> Path:
    (tmp_path / "requirements.txt").write_text(deps)
    (tmp_path / "requirements-nodeps.txt").write_text(nodeps)
    return tmp_path


def test_plan_installs_only_what_differs(tmp_path):
    repo = fake_repo(tmp_path, "tensorflow==2.21.0\nPyYAML==6.0.3\nnumpy==2.4.6\n", "tf_models_official==2.20.0\n")
    installed = {"tensorflow": "2.20.0", "pyyaml": "6.0.3", "numpy": "2.4.6+local", "tf-models-official": "2.19.1"}
    plan = colab.plan_install(repo, installed)
    assert plan == {"deps": {"tensorflow": ("2.20.0", "2.21.0")},
                    "nodeps": {"tf-models-official": ("2.19.1", "2.20.0")}}


def test_install_says_restart_when_the_kernel_imported_a_changed_package(tmp_path, capsys, monkeypatch):
    repo = fake_repo(tmp_path, f"tensorflow==999.0\nnumpy=={np.__version__}\n")
    monkeypatch.setenv("TF_USE_LEGACY_KERAS", "1")
    result = colab.install(repo, dry_run=True, kernel_modules=["numpy", "tensorflow", "IPython"])
    out = capsys.readouterr().out
    assert result["restart"] and result["changed"]["tensorflow"][1] == "999.0"
    assert "RESTART NEEDED" in out and "tensorflow" in result["reason"] and "numpy" not in result["reason"]


def test_install_says_restart_when_tensorflow_came_before_the_keras_switch(tmp_path, capsys, monkeypatch):
    repo = fake_repo(tmp_path, f"numpy=={np.__version__}\n")
    monkeypatch.delenv("TF_USE_LEGACY_KERAS", raising=False)
    result = colab.install(repo, dry_run=True, kernel_modules=["tensorflow"])
    assert result["restart"] and "TF_USE_LEGACY_KERAS" in result["reason"]
    assert colab.os.environ["TF_USE_LEGACY_KERAS"] == "1"  # set for a later first import of TensorFlow


def test_nothing_to_do_needs_no_restart(tmp_path, capsys, monkeypatch):
    repo = fake_repo(tmp_path, f"numpy=={np.__version__}\n")
    monkeypatch.setenv("TF_USE_LEGACY_KERAS", "1")
    result = colab.install(repo, dry_run=True, kernel_modules=["numpy", "tensorflow"])
    assert not result["restart"] and result["changed"] == {}
    assert "No restart needed" in capsys.readouterr().out


def test_script_needs_only_the_standard_library():
    """`python -S` (no site-packages at all) can load the module and plan the install of everything."""
    code = (f"import runpy, sys; before = set(sys.modules); bootstrap = runpy.run_path({str(COLAB_SCRIPT)!r}); "
            f"plan = bootstrap['plan_install']({str(REPO)!r}); "
            "extra = {m.split('.')[0] for m in set(sys.modules) - before} - set(sys.stdlib_module_names); "
            "print(sorted(extra)); print(sorted(plan['deps'])[:3], len(plan['deps']) > 10)")
    result = subprocess.run([sys.executable, "-S", "-I", "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    extra, planned = result.stdout.splitlines()
    assert extra == "[]"
    assert planned.endswith("True")
    cli = subprocess.run([sys.executable, "-S", "-I", str(COLAB_SCRIPT), "install", "--dry-run", "--repo", str(REPO)],
                         capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0, cli.stderr
    assert "tensorflow: not installed -> 2.21.0" in cli.stdout


def test_secrets_in_urls_are_never_printed(capsys):
    secret = "ghp_" + "s3cr3t" * 4
    url = f"https://oauth2:{secret}@127.0.0.1:9/owner/repo.git"
    with pytest.raises(RuntimeError) as error:
        colab.clone(url, Path("/nonexistent/never-created"))
    printed = capsys.readouterr().out
    assert secret not in printed and secret not in str(error.value)
    assert "https://***@127.0.0.1:9/owner/repo.git" in printed
    assert colab.redact("https://x.test/ds/abc?key=" + secret + "&format=tf") == "https://x.test/ds/abc?key=***&format=tf"


def test_colab_links_are_built_from_the_one_repo_url():
    assert colab.REPO_URL == "https://github.com/OWNER/maskdetect"  # placeholder until the repository is published
    assert colab.colab_url("02-video-and-webcam.ipynb", "https://github.com/acme/maskdetect.git") == (
        "https://colab.research.google.com/github/acme/maskdetect/blob/main/notebooks/02-video-and-webcam.ipynb")
    with pytest.raises(ValueError):
        colab.colab_url("x.ipynb", "https://gitlab.com/acme/maskdetect")


# --- fake google.colab ---------------------------------------------------------------------------------------
@pytest.fixture
def fake_colab(monkeypatch):
    """A ``google.colab`` with ``drive.mount``, ``userdata.get`` and ``output.eval_js`` (set per test)."""
    package = types.ModuleType("google.colab")
    package.__path__ = []
    drive = types.SimpleNamespace(mounted=[])
    drive.mount = lambda mount_point, **kwargs: (Path(mount_point, "MyDrive").mkdir(parents=True, exist_ok=True),
                                                 drive.mounted.append(mount_point))
    userdata = types.SimpleNamespace(get=lambda name: None)
    output = types.SimpleNamespace(eval_js=None, calls=[])
    package.drive, package.userdata, package.output = drive, userdata, output
    for name, module in (("google.colab", package), ("google.colab.drive", drive),
                         ("google.colab.userdata", userdata), ("google.colab.output", output)):
        monkeypatch.setitem(sys.modules, name, module)
    return package


def make_run(tmp_path: Path) -> Path:
    run = tmp_path / "runs" / "mine"
    (run / "export" / "saved_model").mkdir(parents=True)
    (run / "pipeline.config").write_text("model {}\n")
    (run / "export" / "saved_model" / "saved_model.pb").write_bytes(b"\0pb")
    return run


def test_copy_to_drive_mounts_and_copies_the_run(fake_colab, tmp_path):
    run = make_run(tmp_path)
    mount = tmp_path / "drive"
    copied = colab.copy_to_drive(run, mount_point=mount)
    assert fake_colab.drive.mounted == [str(mount)]
    assert copied == mount / "MyDrive" / "maskdetect" / "runs" / "mine"
    assert (copied / "export" / "saved_model" / "saved_model.pb").read_bytes() == b"\0pb"
    (run / "metrics-val.json").write_text("{}")
    colab.copy_to_drive(run, mount_point=mount)  # again: updated in place
    assert (copied / "metrics-val.json").exists()


def test_copy_to_drive_off_colab_says_so(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "google.colab", None)  # import fails as off Colab
    with pytest.raises(RuntimeError, match="needs Google Colab"):
        colab.copy_to_drive(make_run(tmp_path), mount_point=tmp_path / "drive")


def test_browser_webcam_reads_newest_frames_and_shows_overlays(fake_colab, monkeypatch):
    displayed = []
    monkeypatch.setattr("IPython.display.display", lambda obj: displayed.append(obj))
    frames = [np.full((48, 64, 3), value, np.uint8) for value in (30, 120, 220)]
    replies = [True] + [colab.encode_data_url(f, quality=95) for f in frames] + [""]

    def eval_js(expression):
        fake_colab.output.calls.append(expression)
        return replies.pop(0) if replies else ""

    fake_colab.output.eval_js = eval_js
    camera = colab.BrowserWebcam(width=320)
    got = []
    for frame in camera.frames():
        got.append(frame)
        camera.show(255 - frame)
    assert len(got) == 3 and got[0].shape == (48, 64, 3)
    assert [int(round(f.mean())) for f in got] == pytest.approx([30, 120, 220], abs=2)
    calls = fake_colab.output.calls
    assert calls[0] == "maskdetectStart(320, 0.8)" and calls[1] == 'maskdetectFrame("")'
    assert calls[2].startswith('maskdetectFrame("data:image/jpeg;base64,')  # the first overlay goes back
    assert "getUserMedia" in displayed[0].data


def test_browser_webcam_stops_after_max_frames_and_releases_the_camera(fake_colab, monkeypatch):
    monkeypatch.setattr("IPython.display.display", lambda obj: None)
    frame = colab.encode_data_url(np.zeros((8, 8, 3), np.uint8))
    fake_colab.output.eval_js = lambda expression: fake_colab.output.calls.append(expression) or (
        True if expression.startswith("maskdetectStart") else frame)
    assert len(list(colab.BrowserWebcam().frames(max_frames=2))) == 2
    assert "stopped = true" in fake_colab.output.calls[-1]


@pytest.mark.skipif(shutil.which("node") is None, reason="node checks the JavaScript's syntax")
def test_webcam_javascript_parses(tmp_path):
    script = tmp_path / "webcam.js"
    script.write_text(colab.WEBCAM_JS)
    result = subprocess.run(["node", "--check", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_data_url_round_trip():
    image = (np.arange(16 * 16 * 3) % 256).astype(np.uint8).reshape(16, 16, 3)
    back = colab.decode_data_url(colab.encode_data_url(image, quality=100))
    assert back.shape == image.shape and np.abs(back.astype(int) - image).mean() < 8
    with pytest.raises(ValueError):
        colab.decode_data_url("data:text/plain;base64,aGk=")


# --- the real thing, in a fresh venv -------------------------------------------------------------------------
@pytest.mark.slow
def test_install_in_a_fresh_venv_with_another_tensorflow(tmp_path):
    """As on Colab: a different TensorFlow is preinstalled AND imported by the kernel; the install step (loaded by
    path with runpy, as the notebook's cell does) upgrades it, installs the rest and says to restart; after the
    restart (a new process) TensorFlow 2.21.0, ``maskdetect`` and the OD API import."""
    venv = tmp_path / "venv"
    python = str(venv / "bin" / "python")
    timings = {}

    def run(*args, timeout=1800):
        started = time.monotonic()
        result = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, f"{args}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        return result, time.monotonic() - started

    _, timings["venv"] = run(sys.executable, "-m", "venv", str(venv))
    _, timings["preinstall tensorflow 2.20.0"] = run(python, "-m", "pip", "install", "--quiet", "tensorflow==2.20.0")
    kernel = (f"import tensorflow as tf, runpy, json; print('before', tf.__version__); "
              f"result = runpy.run_path({str(COLAB_SCRIPT)!r})['install']({str(REPO)!r}); "
              "print('RESULT', json.dumps(result)); import maskdetect; print('IMPORTED', maskdetect.__file__)")
    installed, timings["install step"] = run(python, "-c", kernel)
    assert "before 2.20.0" in installed.stdout
    result = json.loads(installed.stdout.split("RESULT ", 1)[1].splitlines()[0])
    assert result["changed"]["tensorflow"] == ["2.20.0", "2.21.0"]
    assert result["restart"] and "RESTART NEEDED" in installed.stdout
    assert f"IMPORTED {REPO / 'maskdetect' / '__init__.py'}" in installed.stdout  # in the same kernel, from the clone
    after, timings["import after restart"] = run(
        python, "-c", "import maskdetect, object_detection.model_lib_v2, tensorflow as tf, tf_keras; "
                      "print(tf.__version__, maskdetect.__file__)", timeout=600)
    version, location = after.stdout.split()[-2:]
    assert version == "2.21.0" and Path(location).resolve() == (REPO / "maskdetect" / "__init__.py").resolve()
    again, timings["install step again"] = run(python, str(COLAB_SCRIPT), "install", "--repo", str(REPO))
    assert "All pinned requirements are already installed." in again.stdout
    print("fresh-venv install timings (s):", json.dumps({k: round(v, 1) for k, v in timings.items()}))


def test_run_browser_webcam_detects_tracks_records_and_shows(fake_colab, monkeypatch, tmp_path):
    """The Colab live loop with a stub detector (no TensorFlow): FPS and alert banner drawn, frames sent back to
    the page, an H.264 recording and the monitor's summary written."""
    import maskdetect
    from maskdetect.detections import Detections
    from maskdetect.monitor.monitor import Monitor
    from maskdetect.infer.video import probe_video

    monkeypatch.setattr("IPython.display.display", lambda obj: None)
    frame = colab.encode_data_url(np.full((120, 160, 3), 90, np.uint8), quality=95)
    shown = []

    def eval_js(expression):
        if expression.startswith("maskdetectStart"):
            return True
        if expression.startswith("maskdetectFrame(\"data:"):
            shown.append(expression)
        return frame

    fake_colab.output.eval_js = eval_js

    class Unmasked:  # one face without a mask in every frame
        class_names = list(maskdetect.CLASSES)

        def predict(self, image):
            return Detections(xyxy=[[40, 30, 100, 100]], confidence=[0.9], class_id=[1])

    monitor = Monitor(maskdetect.CLASSES, fps=10, alert_seconds=0.0, alert_cooldown_s=0, min_track_frames=1)
    result = colab.run_browser_webcam(Unmasked(), monitor=monitor, record_path=tmp_path / "webcam.mp4",
                                      json_path=tmp_path / "webcam.json", max_frames=12)
    assert result.frames == 12 and result.fps > 0
    assert len(shown) == 11  # every annotated frame but the last goes back with the next request
    info = probe_video(tmp_path / "webcam.mp4")
    assert info.size_wh == (160, 120) and info.codec == "h264"
    assert result.monitor["alerts"]["raised"] >= 1
    records = json.loads((tmp_path / "webcam.json").read_text())  # the same loop as the CLI: JSON records too
    assert len(records) == 12 and {"frame", "time_s", "track_id"} <= records[0].keys()
    assert (tmp_path / "webcam.summary.json").exists() and (tmp_path / "webcam.compliance.png").exists()

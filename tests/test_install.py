"""Installing without the Makefile: the light install (`pip install maskdetect`: predict on TFLite models, no
TensorFlow), the `train` extra plus the one documented no-deps step; the ranges hold our exact pins and Colab's
versions; they resolve for Python 3.13 on Linux, macOS and Windows. Sizes and times: bench/bench_install.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from bench_colab_install import COLAB_RUNTIME
from conftest import REPO
from maskdetect import colab, compat
from maskdetect.cli import main as cli_main

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
LIGHT = [Requirement(text) for text in PYPROJECT["dependencies"]]
TRAIN = [Requirement(text) for text in PYPROJECT["optional-dependencies"]["train"]]
DECLARED = LIGHT + [Requirement(text) for extra in PYPROJECT["optional-dependencies"].values() for text in extra]
IMAGE = REPO / "sample" / "face-mask" / "images" / "maksssksksss104.jpg"


def test_every_declared_dependency_holds_its_exact_pin_and_colabs_version():
    pins = colab.read_pins(REPO / "requirements.txt")
    for requirement in DECLARED:
        name = colab.normalize(requirement.name)
        assert name in pins, f"{name} is declared in pyproject.toml but not pinned in requirements.txt"
        assert requirement.specifier.contains(pins[name]), f"requirements.txt pins {name}=={pins[name]}"
        if name in COLAB_RUNTIME:
            assert requirement.specifier.contains(COLAB_RUNTIME[name]), f"Colab has {name} {COLAB_RUNTIME[name]}"
    assert "pandas" not in pins  # two tables do not need it, and Colab pins its own


def test_the_no_deps_step_is_the_same_everywhere():
    """compat.NODEPS_PINS (what the CLI prints), requirements-nodeps.txt (make setup, Colab) and the README."""
    assert dict(pin.split("==") for pin in compat.NODEPS_PINS) == colab.read_pins(REPO / "requirements-nodeps.txt")
    assert compat.NODEPS_INSTALL in (REPO / "README.md").read_text(encoding="utf-8")


def test_a_missing_od_api_names_the_extra_step(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "object_detection", None)  # as in a venv without the no-deps step
    monkeypatch.setitem(sys.modules, "object_detection.model_lib_v2", None)
    (tmp_path / "pipeline.config").write_text("")
    assert cli_main(["train", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert compat.NODEPS_INSTALL in err and compat.TRAIN_INSTALL in err


def test_the_light_set_resolves_without_tensorflow(tmp_path):
    """`pip install maskdetect` (no extra): uv resolves the declared base set within our pins, and nothing of it
    is TensorFlow, Keras or the OD API's imports (~1 s from uv's cache)."""
    requirements = tmp_path / "light.in"
    requirements.write_text("\n".join(PYPROJECT["dependencies"]) + "\n")
    uv = Path(sys.executable).parent / "uv"
    done = subprocess.run([str(uv), "pip", "compile", "--quiet", str(requirements), "--python-version", "3.11",
                           "-c", str(REPO / "requirements.txt")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    resolved = {colab.normalize(line.split("==")[0]) for line in done.stdout.splitlines() if "==" in line}
    assert {"ai-edge-litert", "opencv-python-headless", "supervision", "av"} <= resolved
    heavy = {"tensorflow", "tf-keras", "keras", "tensorboard", "tf-slim", "pycocotools", "jax", "torch"}
    assert not resolved & heavy, resolved & heavy
    assert not resolved & {"onnxruntime", "onnx", "tf2onnx"}  # the onnx / onnx-export extras bring them


def run_light(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    """``maskdetect ARGS`` with TensorFlow and the OD API unimportable (tests/light_venv.py)."""
    report = tmp_path / "light.json"
    done = subprocess.run([sys.executable, str(REPO / "tests" / "light_venv.py"), str(report), *args],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    return done, json.loads(report.read_text())


def test_predict_on_the_bundled_model_needs_no_tensorflow(tmp_path):
    """The light install's promise: `predict` on the bundled TFLite model (and its second stage) runs with
    TensorFlow and the OD API absent, and never even tries to import them (no silent tf.lite fallback)."""
    done, report = run_light(tmp_path, "predict", "--source", str(IMAGE), "--out", "out.jpg", "--json", "out.json")
    assert done.returncode == 0, done.stderr
    assert report["blocked"] == []
    assert not {"tensorflow", "object_detection", "tf_keras"} & set(report["modules"])
    assert json.loads((tmp_path / "out.json").read_text()) and (tmp_path / "out.jpg").stat().st_size


def test_the_front_door_and_the_monitor_import_without_tensorflow():
    """``import maskdetect`` loads no TensorFlow, OpenCV or model code; its names load lazily, still without TF."""
    code = ("import sys, maskdetect\n"
            "heavy = {'tensorflow', 'object_detection', 'tf_keras', 'cv2', 'maskdetect.infer.predictor'}\n"
            "print(sorted(heavy & set(sys.modules)))\n"
            "from maskdetect import Predictor, Detections, predict_source, Monitor, Tracker\n"
            "Tracker(fps=25)\n"
            "print(sorted({'tensorflow', 'object_detection', 'tf_keras'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[]", "[]"]


@pytest.mark.parametrize("command", [["train", "."], ["data", "convert", "--format", "voc", "--source",
                                                     str(REPO / "sample" / "face-mask"), "--out", "data"]])
def test_a_training_command_on_the_light_install_names_both_pip_lines(tmp_path, command):
    done, report = run_light(tmp_path, *command)
    assert done.returncode == 2, done.stderr
    assert report["blocked"]  # it did need them
    assert f"  {compat.TRAIN_INSTALL}\n  {compat.NODEPS_INSTALL}" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_pip_check_complains_only_about_the_no_deps_packages():
    """What the README and docs/troubleshooting.md say: after the `--no-deps` step, `pip check` lists complaints,
    and every one names one of the packages installed that way (this venv is make setup's: the same packages)."""
    done = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=120)
    complaints = [line for line in done.stdout.splitlines() if line.strip()]
    no_deps = {pin.split("==")[0] for pin in compat.NODEPS_PINS}
    assert complaints, "pip check found nothing: the README's explanation is out of date"
    assert [line for line in complaints if line.split()[0] not in no_deps] == []
    assert any(line.startswith("trackers 2.6.1 requires opencv-python") for line in complaints)


def test_install_hints_name_the_exact_line():
    assert compat.install_hint("trackers.core") == compat.TRACKERS_INSTALL == "pip install --no-deps trackers==2.6.1"
    assert compat.install_hint("tensorflow.python") == f"{compat.TRAIN_INSTALL}\n{compat.NODEPS_INSTALL}"
    assert compat.install_hint("object_detection") == f"{compat.TRAIN_INSTALL}\n{compat.NODEPS_INSTALL}"
    assert compat.install_hint("cv2") is None and compat.install_hint(None) is None


@pytest.mark.slow
def test_declared_dependencies_resolve_to_wheels_for_python_3_13_everywhere(tmp_path):
    """Nothing blocks Python 3.13 (Colab's) on Linux, macOS or Windows: uv resolves pyproject's dependencies
    with binary wheels only for the compiled ones (asks PyPI)."""
    requirements = tmp_path / "requirements.in"
    requirements.write_text("\n".join(str(r) for r in LIGHT + TRAIN) + "\n")
    uv = Path(sys.executable).parent / "uv"
    binary = ["tensorflow", "tf-keras", "numpy", "scipy", "av", "pycocotools", "opencv-python-headless",
              "protobuf", "matplotlib", "pillow"]
    for platform in ("x86_64-manylinux_2_28", "aarch64-apple-darwin", "x86_64-pc-windows-msvc"):
        done = subprocess.run([str(uv), "pip", "compile", "--quiet", str(requirements), "--python-version", "3.13",
                               "--python-platform", platform, *(f"--only-binary={name}" for name in binary)],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{platform}: {done.stderr[-2000:]}"
        assert "\ntensorflow==2.2" in "\n" + done.stdout, platform


@pytest.mark.slow
def test_pip_install_in_a_fresh_venv_then_help_and_a_prediction(tiny_export, tmp_path):
    """The README's pip route, with plain pip in a fresh venv: the project (not editable), then the one no-deps
    step; `maskdetect --help` and a prediction with the tiny export work there, quietly."""
    venv = tmp_path / "venv"
    timings = {}

    def run(*args, timeout=2400, name=None):
        started = time.monotonic()
        done = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, cwd=tmp_path)
        assert done.returncode == 0, f"{args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        if name:
            timings[name] = round(time.monotonic() - started, 1)
        return done

    source = tmp_path / "maskdetect-src"  # pip builds in the source tree: not in the clone (no stale build/)
    shutil.copytree(REPO / "maskdetect", source / "maskdetect", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copyfile(REPO / name, source / name)
    run(sys.executable, "-m", "venv", str(venv))
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    run(*pip, f"{source}[train]", name="pip install project")
    run(*pip, *compat.NODEPS_INSTALL.split()[2:], name="pip install --no-deps step")
    cli = str(venv / "bin" / "maskdetect")
    assert "usage: maskdetect" in run(cli, "--help").stdout
    image = sorted((REPO / "sample" / "face-mask" / "images").glob("*.jpg"))[0]
    predicted = run(cli, "predict", "--model", str(tiny_export.saved_model), "--source", str(image),
                    "--out", str(tmp_path / "out.jpg"), "--json", str(tmp_path / "out.json"), name="predict")
    assert json.loads((tmp_path / "out.json").read_text()) is not None and (tmp_path / "out.jpg").stat().st_size
    assert "cuInit" not in predicted.stderr and "absl::InitializeLog" not in predicted.stderr
    location = run(str(venv / "bin" / "python"), "-c", "import maskdetect; print(maskdetect.__file__)").stdout
    assert str(venv) in location  # the installed copy, not the clone
    print("pip install timings (s):", json.dumps(timings))

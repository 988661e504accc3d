"""Installing without the Makefile: `pip install` of the project (declared dependency ranges) plus the one
documented no-deps step; the ranges hold our exact pins and Colab's versions; they resolve for Python 3.13 on
Linux, macOS and Windows."""

from __future__ import annotations

import json
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
DECLARED = [Requirement(text) for text in PYPROJECT["dependencies"]]


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
    assert compat.NODEPS_INSTALL in capsys.readouterr().err


@pytest.mark.slow
def test_declared_dependencies_resolve_to_wheels_for_python_3_13_everywhere(tmp_path):
    """Nothing blocks Python 3.13 (Colab's) on Linux, macOS or Windows: uv resolves pyproject's dependencies
    with binary wheels only for the compiled ones (asks PyPI)."""
    requirements = tmp_path / "requirements.in"
    requirements.write_text("\n".join(PYPROJECT["dependencies"]) + "\n")
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
    run(*pip, str(source), name="pip install project")
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

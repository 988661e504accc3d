"""maskdetect.colab: the install step (standard library only, as Colab runs it), Drive copy and the browser
webcam, with a fake ``google.colab``; and, slow, the install in a fresh venv holding another TensorFlow."""

from __future__ import annotations

import json
import runpy
import shutil
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

from bench_colab_install import COLAB_RUNTIME, disk_bytes, make_colab_standin, versions
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


def test_plan_nodeps_lists_only_what_differs(tmp_path):
    repo = fake_repo(tmp_path, "", "tf_models_official==2.20.0\nlvis==0.5.3\ntrackers==2.6.1\n")
    installed = {"tf-models-official": "2.19.1", "lvis": "0.5.3", "tensorflow": "2.20.0"}
    assert colab.plan_nodeps(repo, installed) == {"tf-models-official": ("2.19.1", "2.20.0"),
                                                 "trackers": (None, "2.6.1")}


def test_declared_dependencies_come_from_pyproject_with_extras():
    deps = colab.declared_dependencies(REPO)  # the light set: predicting needs no TensorFlow
    assert not any(d.startswith(("tensorflow", "roboflow")) for d in deps)
    assert "tensorflow>=2.20,<2.22" in colab.declared_dependencies(REPO, ["train"])
    assert any(d.startswith("roboflow") for d in colab.declared_dependencies(REPO, ["roboflow"]))
    with pytest.raises(ValueError, match="unknown extra"):
        colab.declared_dependencies(REPO, ["gpu"])


@pytest.mark.parametrize("changed, modules, late, expected", [
    (["tensorflow", "numpy"], ["numpy", "IPython"], False, ["already imported numpy"]),
    (["tf-models-official", "pyyaml"], ["yaml", "official"], False, ["already imported pyyaml, tf-models-official"]),
    ([], ["tensorflow"], True, ["TF_USE_LEGACY_KERAS=1"]),
    (["tf-slim", "gin-config"], ["tensorflow", "numpy", "IPython"], False, []),  # what Colab's kernel meets
])
def test_restart_only_when_an_imported_package_changed_or_keras_came_too_late(changed, modules, late, expected):
    reasons = colab.restart_reasons(changed, modules, late)
    assert len(reasons) == len(expected)
    for reason, text in zip(reasons, expected):
        assert text in reason


@pytest.mark.parametrize("gpus, on_colab, said", [
    (["/physical_device:GPU:0"], True, "1 GPU(s) /physical_device:GPU:0"),
    ([], True, "Runtime > Change runtime type > T4 GPU"),
    ([], False, "training runs on the CPU"),
])
def test_gpu_report_after_the_install_says_what_to_do(monkeypatch, capsys, gpus, on_colab, said):
    fake_tf = types.SimpleNamespace(__version__="2.20.0", test=types.SimpleNamespace(is_built_with_cuda=lambda: True),
                                    config=types.SimpleNamespace(list_physical_devices=lambda kind: [
                                        types.SimpleNamespace(name=name) for name in gpus]))
    monkeypatch.setitem(sys.modules, "tensorflow", fake_tf)
    monkeypatch.setattr(colab, "in_colab", lambda: on_colab)
    assert colab.gpu_report() == {"tensorflow": "2.20.0", "gpus": gpus, "cuda_build": True}
    out = capsys.readouterr().out
    assert said in out and ("No GPU" in out) == (not gpus)


def test_script_needs_only_the_standard_library():
    """`python -S` (no site-packages at all) can load the module and read what it would install."""
    code = (f"import runpy, sys; before = set(sys.modules); bootstrap = runpy.run_path({str(COLAB_SCRIPT)!r}); "
            f"deps = bootstrap['declared_dependencies']({str(REPO)!r}); "
            f"nodeps = bootstrap['plan_nodeps']({str(REPO)!r}); "
            "extra = {m.split('.')[0] for m in set(sys.modules) - before} - set(sys.stdlib_module_names); "
            "print(sorted(extra)); print(len(deps) > 10, sorted(nodeps)[0])")
    result = subprocess.run([sys.executable, "-S", "-I", "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    extra, planned = result.stdout.splitlines()
    assert extra == "[]"
    assert planned == "True lvis"
    cli = subprocess.run([sys.executable, "-S", "-I", str(COLAB_SCRIPT), "install", "--help"],
                         capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0 and "--dry-run" in cli.stdout, cli.stderr


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


def test_set_repo_names_the_repository_everywhere_it_is_linked(tmp_path):
    for name in colab.REPO_FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / name, tmp_path / name)
    shutil.copyfile(REPO / "maskdetect" / "redact.py", tmp_path / "maskdetect" / "redact.py")  # colab.py loads it
    changed = colab.set_repo("https://github.com/acme/maskdetect.git", root=tmp_path)
    assert sorted(changed) == sorted(tmp_path / name for name in colab.REPO_FILES)
    for name in colab.REPO_FILES:
        text = (tmp_path / name).read_text(encoding="utf-8")
        assert "github.com/OWNER/maskdetect" not in text and "github/OWNER/maskdetect" not in text, name
        assert "acme/maskdetect" in text
    moved = runpy.run_path(str(tmp_path / "maskdetect" / "colab.py"))
    assert moved["REPO_URL"] == "https://github.com/acme/maskdetect"
    assert colab.set_repo("https://github.com/acme/maskdetect", root=tmp_path) == []  # already set
    with pytest.raises(ValueError, match="not a https://github.com"):
        colab.set_repo("https://gitlab.com/acme/maskdetect", root=tmp_path)


def test_the_placeholder_stops_a_colab_clone_with_a_clear_error():
    """The notebooks' clone cells refuse the placeholder (its 404 would say nothing useful)."""
    import nbformat

    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        clone = [c.source for c in nbformat.read(path, as_version=4).cells if "git clone" in c.source]
        assert len(clone) == 1 and 'if "/OWNER/" in REPO_URL:' in clone[0] and "raise ValueError" in clone[0]


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


def test_run_dir_lives_on_drive_on_colab_and_resumes_from_it(fake_colab, tmp_path, capsys):
    mount = tmp_path / "drive"
    run_dir = colab.run_dir_for("mine", tmp_path / "local", drive_mount=mount)
    assert fake_colab.drive.mounted == [str(mount)]
    assert run_dir == mount / "MyDrive" / "maskdetect" / "runs" / "mine" and run_dir.parent.is_dir()
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "ckpt-500.index").write_bytes(b"")
    assert colab.run_dir_for("mine", tmp_path / "local", drive_mount=mount) == run_dir  # a new runtime
    assert "resuming: 1 checkpoint(s) there" in capsys.readouterr().out
    assert colab.run_dir_for("mine", tmp_path / "local") == tmp_path / "local" / "mine"


def test_run_dir_on_drive_off_colab_says_so(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "google.colab", None)  # import fails as off Colab
    with pytest.raises(RuntimeError, match="needs Colab"):
        colab.run_dir_for("mine", tmp_path, drive_mount=tmp_path / "drive")


# --- the real thing: a venv holding Colab's own versions ------------------------------------------------------
def notebook_install_cell() -> str:
    """The source of notebook 01's install cell (the one that runs ``bootstrap["install"]``)."""
    import nbformat

    notebook = nbformat.read(REPO / "notebooks" / "01-train-on-colab.ipynb", as_version=4)
    cells = [c.source for c in notebook.cells if c.cell_type == "code" and 'bootstrap["install"]' in c.source]
    assert len(cells) == 1
    return cells[0]


@pytest.mark.slow
def test_colab_runtime_keeps_its_tensorflow_then_trains_and_exports(tmp_path):
    """On Colab's versions, notebook 01's install cell adds only what is missing: TensorFlow 2.20, NumPy,
    protobuf 5.29, pandas, Pillow and requests stay, pip reports no conflict, no restart is asked for. Then the
    compat tests and a tiny train + export run there (the compat layer on TF 2.20 / protobuf 5.29)."""
    timings: dict[str, float] = {}

    def run(*args, timeout=1800, name=None, **kwargs):
        started = time.monotonic()
        result = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, **kwargs)
        assert result.returncode == 0, f"{args}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        if name:
            timings[name] = round(time.monotonic() - started, 1)
        return result

    venv = tmp_path / "colab"
    python = make_colab_standin(venv)
    before_bytes = disk_bytes(venv)
    plan = run(str(python), str(COLAB_SCRIPT), "install", "--dry-run", "--repo", str(REPO), "--extra", "train",
               name="dry run")
    assert "tensorflow:" not in plan.stdout and "  tf-slim: not installed -> " in plan.stdout

    kernel = ("import numpy\n"  # a Colab kernel has numpy imported: it must not change under it
              f"REPO_DIR, INSTALL, DATA_SOURCE = {str(REPO)!r}, True, \"sample\"\n{notebook_install_cell()}")
    before = versions(python)
    installed = run(str(python), "-c", kernel, name="install cell")
    output = installed.stdout + installed.stderr
    assert "No restart needed" in output and "RESTART NEEDED" not in output, output
    assert "incompatible" not in output and "conflict" not in output, output
    after = versions(python)
    assert {name: after.get(name) for name in COLAB_RUNTIME} == COLAB_RUNTIME
    added_bytes = disk_bytes(venv) - before_bytes

    run(str(Path(sys.executable).parent / "uv"), "pip", "install", "--quiet", "--python", str(python),
        "pytest")
    run(str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow",
        str(REPO / "tests" / "test_compat.py"), cwd=REPO, name="compat tests")

    cli = [str(venv / "bin" / "maskdetect")]
    assert "usage: maskdetect" in run(*cli, "--help").stdout
    data, run_dir = tmp_path / "data", tmp_path / "run"
    run(*cli, "data", "convert", "--format", "voc", "--source", str(REPO / "sample" / "face-mask"),
        "--out", str(data), "--split", "0.8,0.2,0", "--seed", "0")
    run(*cli, "configure", "--data", str(data), "--out", str(run_dir), "--image-size", "256",
        "--batch-size", "2", "--steps", "2", "--from-scratch")
    trained = run(*cli, "train", str(run_dir), "--steps-per-iteration", "2", "--recalibration-batches", "2",
                  name="train 2 steps")
    assert json.loads(trained.stdout[trained.stdout.index("{"):])["final_step"] == 2
    exported = run(*cli, "export", str(run_dir), name="export")
    assert (run_dir / "export" / "saved_model" / "saved_model.pb").is_file()
    assert "cuInit" not in exported.stderr and "absl::InitializeLog" not in exported.stderr  # quiet on TF 2.20 too
    # D0 (the default model; the rest of the suite trains the lighter one) trained letterboxed: its TFLite export
    # swaps the keep-aspect resizer for a fixed one (breakage 9) and records the letterbox; both exports then
    # predict a 16:9 frame, letterboxed, with every box inside the frame
    run(*cli, "export", str(run_dir), "--format", "tflite", "--score-floor", "0", name="export tflite")
    assert json.loads((run_dir / "export" / "tflite_input.json").read_text())["letterbox"] is True
    photo, wide = sorted((REPO / "sample" / "face-mask" / "images").glob("*.jpg"))[0], tmp_path / "wide.png"
    run(str(python), "-c", f"import cv2; cv2.imwrite({str(wide)!r}, cv2.resize(cv2.imread({str(photo)!r}), (512, 288)))")
    for model in ("saved_model", "model.tflite"):
        out = tmp_path / f"{model}.json"
        run(*cli, "predict", "--model", str(run_dir / "export" / model), "--source", str(wide), "--json", str(out),
            "--threshold", "0", name=f"predict {model}")  # a 2-step model's scores are its prior's, ~0.01
        boxes = [d["bbox_xyxy"] for d in json.loads(out.read_text())]
        assert boxes and all(0 <= x0 <= x1 <= 512 and 0 <= y0 <= y1 <= 288 for x0, y0, x1, y1 in boxes), model
    changed = sorted(name for name in after if before.get(name) != after[name])
    assert not [name for name in changed if before.get(name)], "the install upgraded what Colab has"
    figures = {"timings_s": timings, "install_added_mb": round(added_bytes / 1e6), "added": changed}
    print("colab-runtime install:", json.dumps(figures))

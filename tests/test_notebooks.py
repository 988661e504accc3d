"""The notebooks run headless to the end, with tiny settings injected after their ``parameters`` cells.

Like papermill, a cell tagged ``parameters`` is followed by an injected cell that assigns the overrides; unlike
papermill, a notebook may have several such cells (setup choices at the top, training choices in its
"Configure" section), and each override goes after the cell that defines it. An override that no parameters
cell defines is an error, so a renamed parameter cannot silently stop being tested.

Colab is replaced by a fake ``google.colab`` (drive, userdata, output, files: the file picker) put in the kernel
by a prelude cell; the webcam by a video file passed as the camera; the model zoo by ``FROM_SCRATCH``.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from conftest import LOOP_MODEL, REPO, TINY_SIZE

NOTEBOOKS = REPO / "notebooks"
NOTEBOOK_01 = NOTEBOOKS / "01-train-on-colab.ipynb"
NOTEBOOK_02 = NOTEBOOKS / "02-video-and-webcam.ipynb"
CELL_TIMEOUT_S = 600

FAKE_COLAB = '''
import os, sys, types
from pathlib import Path
_colab = types.ModuleType("google.colab")
_colab.__path__ = []
_drive = types.ModuleType("google.colab.drive")
def _mount(mount_point, **kwargs):
    (Path(mount_point) / "MyDrive").mkdir(parents=True, exist_ok=True)
    _drive.mounted.append(mount_point)
_drive.mount, _drive.mounted = _mount, []
_userdata = types.ModuleType("google.colab.userdata")
_userdata.get = lambda name: {SECRETS!r}.get(name)
_output = types.ModuleType("google.colab.output")
_output.eval_js = lambda expression: ""
_files = types.ModuleType("google.colab.files")  # the file picker: the files the test names, as chosen by a user
_files.upload = lambda: {Path(p).name: Path(p).read_bytes() for p in {UPLOADS!r}}
_colab.drive, _colab.userdata, _colab.output, _colab.files = _drive, _userdata, _output, _files
for _name, _module in (("google.colab", _colab), ("google.colab.drive", _drive), ("google.colab.files", _files),
                       ("google.colab.userdata", _userdata), ("google.colab.output", _output)):
    sys.modules[_name] = _module
'''


def parameter_names(source: str) -> list[str]:
    """Names assigned at the top level of a parameters cell."""
    names = []
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, (ast.AnnAssign, ast.AugAssign)) else []
        names += [t.id for t in targets if isinstance(t, ast.Name)]
    return names


def inject(notebook, overrides: dict, prelude: str | None = None):
    """A copy of `notebook` with an override cell after each ``parameters`` cell (and `prelude` first)."""
    notebook = nbformat.from_dict(json.loads(json.dumps(notebook)))
    cells, used = [], set()
    if prelude:
        cells.append(nbformat.v4.new_code_cell(prelude, metadata={"tags": ["injected-prelude"]}))
    for cell in notebook.cells:
        cells.append(cell)
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []):
            names = [n for n in parameter_names(cell.source) if n in overrides]
            if names:
                source = "\n".join(f"{n} = {overrides[n]!r}" for n in names)
                cells.append(nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]}))
                used.update(names)
    unknown = set(overrides) - used
    assert not unknown, f"no parameters cell defines {sorted(unknown)}"
    notebook.cells = cells
    return notebook


def execute(path: Path, overrides: dict, *, cwd: Path, prelude: str | None = None, save_to: Path | None = None):
    """Run the notebook at `path` with `overrides` in a fresh kernel (this venv's Python); return it executed."""
    from nbclient import NotebookClient

    notebook = inject(nbformat.read(path, as_version=4), overrides, prelude)
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(cwd)}})
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    try:
        client.execute(env=env)
    finally:
        if save_to is not None:  # the executed notebook, to look at when a cell failed
            nbformat.write(notebook, save_to)
    return notebook


def outputs(notebook, kind: str | None = None) -> list:
    found = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    return [o for o in found if kind is None or o.get("output_type") == kind]


def text_of(notebook) -> str:
    parts = []
    for output in outputs(notebook):
        if output.get("output_type") == "stream":
            parts.append(output["text"])
        elif "data" in output:
            parts.append(output["data"].get("text/plain", ""))
    return "\n".join(parts)


def html_of(notebook) -> str:
    return "\n".join(o["data"].get("text/html", "") for o in outputs(notebook) if "data" in o)


# --- fast checks ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", [NOTEBOOK_01, NOTEBOOK_02], ids=lambda p: p.name)
def test_committed_notebooks_have_no_outputs(path):
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "strip_notebooks.py"), "--check", str(path)],
                            capture_output=True, text=True)
    assert result.returncode == 0, f"run `python scripts/strip_notebooks.py` before committing: {result.stdout}"
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)


@pytest.mark.parametrize("path", [NOTEBOOK_01, NOTEBOOK_02], ids=lambda p: p.name)
def test_notebooks_are_thin(path):
    """Cells call the package: a parameters cell first, then no cell longer than a few lines (STYLE.md)."""
    notebook = nbformat.read(path, as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    for cell in code:
        if "parameters" in cell.metadata.get("tags", []):
            continue
        lines = [line for line in cell.source.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        assert len(lines) <= 8, f"cell too long for a thin notebook:\n{cell.source}"
        assert "def " not in cell.source and "class " not in cell.source, "logic belongs in the package"
        assert "%cd" not in cell.source


def test_repo_url_is_written_in_one_place_and_the_copies_match():
    """maskdetect.colab.REPO_URL is the source; the notebooks' badges and clone URL and the README copy it."""
    from maskdetect.colab import REPO_URL, colab_url

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for path in (NOTEBOOK_01, NOTEBOOK_02):
        notebook = nbformat.read(path, as_version=4)
        assert colab_url(path.name) in notebook.cells[0].source
        assert colab_url(path.name) in readme
    parameters = nbformat.read(NOTEBOOK_01, as_version=4).cells[1].source
    assert f'REPO_URL = "{REPO_URL}"' in parameters


def test_inject_puts_each_override_after_the_cell_that_defines_it():
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("A = 1\nB: int = 2", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("print(A)"),
        nbformat.v4.new_code_cell("C = 3", metadata={"tags": ["parameters"]}),
    ])
    injected = inject(notebook, {"B": 5, "C": "x"}, prelude="pass")
    sources = [c.source for c in injected.cells]
    assert sources == ["pass", "A = 1\nB: int = 2", "B = 5", "print(A)", "C = 3", "C = 'x'"]
    with pytest.raises(AssertionError, match="TYPO"):
        inject(notebook, {"TYPO": 1})


# --- the notebooks, executed ---------------------------------------------------------------------------------
def fake_colab(secrets: dict | None = None, uploads: list | None = None) -> str:
    return FAKE_COLAB.replace("{SECRETS!r}", repr(secrets or {})).replace("{UPLOADS!r}",
                                                                          repr([str(p) for p in uploads or []]))


def yolo_zip_of_the_sample(tmp_path: Path) -> Path:
    """The sample as a YOLO zip wrapped in one top folder, its classes named as a Roboflow set names them."""
    import shutil

    from data_fixtures import SAMPLE, voc_to_yolo

    names = ("Mask", "No_Mask", "Incorrect_Mask")
    rename = dict(zip(("with_mask", "without_mask", "mask_weared_incorrect"), names))
    folder = voc_to_yolo(SAMPLE, tmp_path / "yolo" / "masks-yolo", classes=names, rename=rename)
    return Path(shutil.make_archive(str(tmp_path / "masks-yolo"), "zip", folder.parent))


@pytest.mark.slow
def test_01_train_on_colab_runs_headless(tmp_path):
    """The upload path on a fake Colab: install (a no-op here) -> GPU check -> a YOLO zip chosen in Colab's file
    picker, with other class names -> unpack, convert with CLASS_MAP -> inspect -> the steps planned from the
    data's size (overridden: 4) -> configure -> train 4 steps at TINY_SIZE px with the run on (fake) Drive ->
    evaluate -> export -> predict."""
    workspace, drive = tmp_path / "workspace", tmp_path / "drive"
    prelude = fake_colab(uploads=[yolo_zip_of_the_sample(tmp_path)])
    started = time.monotonic()
    notebook = execute(NOTEBOOK_01, {
        "REPO_DIR": str(REPO), "WORKSPACE": str(workspace), "DATA_SOURCE": "zip", "INTERACTIVE": False,
        "DRIVE_MOUNT": str(drive), "MODEL": LOOP_MODEL, "NUM_STEPS": 4, "BATCH_SIZE": 2, "CHECKPOINT_EVERY": 4,
        "IMAGE_SIZE": TINY_SIZE, "FROM_SCRATCH": True, "EXPORT_TFLITE": False, "RUN_NAME": "ci",
    }, cwd=tmp_path, prelude=prelude, save_to=tmp_path / "01-executed.ipynb")
    seconds = time.monotonic() - started
    print(f"notebook 01 ran in {seconds:.0f} s")

    text = text_of(notebook)
    assert "No restart needed" in text and "RESTART NEEDED" not in text
    assert "Colab: True" in text and "No GPU" in text  # the GPU check ran after the install, and said what to do
    assert ("4 steps (yours); the data's size suggests 2475 steps of batch 2 = 165 passes over 30 training "
            "images") in text
    assert "expected time: about 10 min on a 2-core CPU" in text  # no GPU here
    assert not [line for line in text.splitlines() if "cuInit" in line or "absl::InitializeLog" in line]
    assert (workspace / "uploads" / "masks-yolo.zip").is_file()  # what the file picker gave, kept
    run = drive / "MyDrive" / "maskdetect" / "runs" / "ci"  # the run lives on Drive
    assert (run / "pipeline.config").exists() and (run / "metrics-val.json").exists()
    assert (run / "checkpoints" / "ckpt-4.index").exists()  # written to Drive by train(); a new runtime resumes
    assert (run / "export" / "saved_model" / "saved_model.pb").exists()
    assert json.loads((run / "train_log.jsonl").read_text().splitlines()[-1])["step"] == 4
    classes = json.loads((run / "data_manifest.json").read_text())["class_names"]
    assert classes[:2] == ["with_mask", "without_mask"]  # CLASS_MAP gave ours, in our order
    page = html_of(notebook)
    assert page.count("<img") >= 3 + 2 + 1  # inspect PNGs, PR curves + confusion matrix, predictions
    assert "with_mask" in page and "AP@0.5" in page  # the per-class table


@pytest.mark.slow
def test_02_video_and_webcam_runs_headless(tmp_path):
    """The bundled model (the default: no training, no Drive, no TensorFlow) on an image -> a video (H.264,
    inline) with tracking and alerts -> a video file standing in for the webcam, previewed inline and recorded."""
    out = tmp_path / "out"
    started = time.monotonic()
    notebook = execute(NOTEBOOK_02, {
        "OUT_DIR": str(out), "THRESHOLD": 0.3,
        "CAMERA": str(out / "sample.mp4"),  # the clip the video section made stands in for the webcam
        "WEBCAM_SECONDS": 2.0, "VIDEO_SECONDS": 2.0,
    }, cwd=NOTEBOOKS, save_to=tmp_path / "02-executed.ipynb")
    seconds = time.monotonic() - started
    print(f"notebook 02 ran in {seconds:.0f} s")

    assert "models/default/model-int8.tflite" in text_of(notebook)  # the bundled model
    assert (out / "image.jpg").exists() and (out / "annotated.mp4").exists()
    assert (out / "annotated.summary.json").exists() and (out / "annotated.compliance.png").exists()
    assert (out / "webcam.mp4").exists()
    page = html_of(notebook)
    assert page.count("<video") >= 1 and "data:video/mp4;base64," in page
    assert page.count("<img") >= 2


def test_02_mounts_drive_only_for_a_run_there():
    """The bundled model needs no Drive: the one `run_dir_for(..., drive_mount=...)` call is behind "drive"."""
    cells = [c.source for c in nbformat.read(NOTEBOOK_02, as_version=4).cells if c.cell_type == "code"]
    mounting = [c for c in cells if "drive_mount=" in c or "mount_drive" in c]
    assert len(mounting) == 1 and 'drive_mount=DRIVE_MOUNT if MODEL_PATH == "drive" else None' in mounting[0]
    assert 'MODEL_PATH = "bundled"' in cells[0]

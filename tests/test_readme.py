"""The README's commands and those of docs/*.md (and those the notebooks' text shows): every ``maskdetect`` line parses with the real CLI
(no option that does not exist, no missing required one), every ``make`` target exists, and the workflow's data and
predict lines, the Roboflow data lines, every configure line, the alert lines and the CPU recipe's whole block
(train, evaluate, export, classifier; with options appended that only shrink the work) run verbatim (on stand-ins
for the user's files, camera and players, and loopback servers for the export link, the model zoo, the webhook and
e-mail). (The other train/evaluate/export/classifier lines are the same commands on other run folders, hours as
written; the pip lines run in test_install, ``set-repo`` in test_colab_install.)"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, SAMPLE, tiny_configure
from data_fixtures import serve
from test_hooks import server, smtp_server, url_of  # noqa: F401 (fixtures)
from maskdetect.cli import build_parser

#: The README, then the docs whose commands it points to (recipes, troubleshooting, ...), as one text: a block that
#: moves between them is still found and run.
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
README = "\n\n".join(path.read_text(encoding="utf-8") for path in DOCS)


def readme_commands() -> list[tuple[str, str]]:
    """``(line as written, normalized)`` for each command of the README's ```bash blocks: continuation lines
    joined; normalized: comments and leading ``VAR=value`` assignments dropped, `$VAR` set in the block expanded,
    the optional ``[...]`` parts kept as options."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S):
        variables: dict[str, str] = {}
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line.strip(), comments=True)
            if len(words) == 1 and re.fullmatch(r"[A-Z_]+=.*", words[0]):
                name, value = words[0].split("=", 1)
                variables[name] = value
                continue
            while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
                words.pop(0)
            if not words:
                continue
            words = [part for w in words for part in (shlex.split(variables[w[1:]]) if w[1:] in variables else [w])]
            words = [w.strip("[]") for w in words if w.strip("[]") not in ("", "...")]
            for part in " ".join(shlex.quote(w) for w in words).split(" '&&' "):
                commands.append((line.strip(), part))
    return commands


def without_optional_parts(line: str) -> str:
    """`line` with its ``[...]`` parts (nested ones too) and its comment removed."""
    line = line.split("  #")[0]
    while True:
        shorter = re.sub(r"\s*\[[^][]*\]", "", line)
        if shorter == line:
            return line.strip()
        line = shorter


def recipe_project(tmp_path: Path, monkeypatch) -> Path:
    """A project folder, made the working folder, holding a ``face-mask-kaggle/`` that is the sample (where the CPU
    recipe tells the user to unzip the Kaggle set, and what its `data convert` line reads)."""
    import shutil

    project = tmp_path / "project"
    shutil.copytree(SAMPLE, project / "face-mask-kaggle")
    monkeypatch.chdir(project)
    return project


KAGGLE_CONVERT = "--source face-mask-kaggle "


def notebook_commands() -> list[str]:
    """The ``maskdetect ... --option`` commands the notebooks' text shows (their code cells run in test_notebooks)."""
    import nbformat

    found = []
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "markdown":
                found += [c for c in re.findall(r"`(maskdetect [^`]+)`", cell.source) if " --" in c]
    return found


COMMANDS = [normalized for _, normalized in readme_commands()]
CLI_COMMANDS = [c for c in COMMANDS if c.startswith("maskdetect ")] + notebook_commands()


def test_the_readme_and_notebooks_have_commands_to_check():
    assert len(CLI_COMMANDS) >= 15 and any(c.startswith("make ") for c in COMMANDS)
    assert len(notebook_commands()) >= 1


@pytest.mark.parametrize("command", CLI_COMMANDS)
def test_every_maskdetect_command_parses(command, capsys):
    words = shlex.split(command)[1:]
    try:
        args = build_parser().parse_args(words)
    except SystemExit:
        pytest.fail(f"the README's command does not parse: {command}\n{capsys.readouterr().err}")
    assert callable(args.func)


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.startswith("make ")])
def test_every_make_target_exists(command):
    done = subprocess.run(["make", "-n", *shlex.split(command)[1:]], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_the_roboflow_data_lines_run_verbatim(tmp_path):
    """`data download roboflow --url` from a loopback export link whose classes are named Mask/No_Mask, then
    `data convert --format tfrecord --split keep --map ...`: our classes, in our order, Roboflow's split kept."""
    import json

    from data_fixtures import roboflow_export_of_the_sample

    lines = [raw for raw, _ in readme_commands() if "rf-export" in raw and ("--url" in raw or "convert" in raw)]
    assert len(lines) == 2
    with serve({"/ds/masks.zip": roboflow_export_of_the_sample(tmp_path / "made")}) as server:
        env = {**os.environ, "ROBOFLOW_EXPORT_URL": server.url("/ds/masks.zip?key=L1nkSecret"),
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        for line in lines:
            done = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True,
                                  timeout=600)
            assert done.returncode == 0, f"{line}\n{done.stderr[-3000:]}"
            assert "L1nkSecret" not in done.stdout + done.stderr
    manifest = json.loads((tmp_path / "workspace" / "data" / "rf" / "manifest.json").read_text())
    assert manifest["classes"] == ["with_mask", "without_mask", "mask_weared_incorrect"]
    assert {"train", "val", "test"} <= set(manifest["counts"])


def test_make_notebook_serves_the_notebooks_from_the_venv(tmp_path):
    """`make notebook` (README) starts Jupyter Lab on notebooks/ with this venv's kernel; stopped once it serves."""
    import json
    import signal
    import socket
    import time
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    options = (f"--no-browser --allow-root --ip=127.0.0.1 --port={port} --IdentityProvider.token=t0ken "
               f"--ServerApp.root_dir={REPO}/notebooks")  # root: CI containers
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path), "JUPYTER_CONFIG_DIR": str(tmp_path / "config")}
    server = subprocess.Popen(["make", "--no-print-directory", "notebook", f"JUPYTER_ARGS={options}"], cwd=REPO, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline, listing = time.monotonic() + 300, None  # a loaded machine starts Jupyter slowly
        while listing is None:
            assert server.poll() is None, "make notebook ended"
            assert time.monotonic() < deadline, "Jupyter Lab did not answer"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/contents?token=t0ken", timeout=5) as reply:
                    listing = json.loads(reply.read())
            except OSError:
                time.sleep(1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/kernelspecs?token=t0ken", timeout=5) as reply:
            specs = json.loads(reply.read())
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    assert {item["name"] for item in listing["content"]} >= {"01-train-on-colab.ipynb", "02-video-and-webcam.ipynb"}
    assert "python3" in specs["kernelspecs"]


@pytest.mark.slow
def test_the_workflow_data_and_predict_lines_run_verbatim(tmp_path, monkeypatch, capsys):
    """The workflow block's `data` and `predict` lines as written, and the predict line the notebooks' text shows,
    in a folder where ``path/to/kaggle`` is the sample (VOC), ``path/to/yolo`` the sample as a two-class YOLO set
    named mask/no-mask, ``photo.jpg`` a sample photo, ``clip.mp4`` a short clip of one, and
    ``workspace/runs/masks/export`` and ``.../demo/export`` copies of the bundled model's folder (an export's
    layout: one detector .tflite, its input spec, label map and second stage). The webcam line runs with the clip
    in place of camera 0 (no camera here; on a headless machine `--show` says so and goes on)."""
    import json
    import shutil

    from data_fixtures import voc_to_yolo
    from maskdetect.cli import main
    from maskdetect.infer.predictor import bundled_model
    from maskdetect.sample_video import make_sample_video

    block = re.search(r"```bash\n# 1\. data.*?```", README, flags=re.S).group(0)
    lines = [line.split("  #")[0].strip().replace("--source 0 ", "--source clip.mp4 ") for line in
             block.splitlines() if line.startswith(("maskdetect data ", "maskdetect predict "))]
    assert len(lines) == 6 and "--show" in lines[-1], lines
    lines += notebook_commands()  # the notebooks' text shows a predict line
    quickstart = re.search(r"## Quickstart\n\n```bash\n(.*?)```", README, flags=re.S).group(1)
    quick = [line.split("  #")[0].strip().replace("--source 0 ", "--source clip.mp4 ") for line in
             quickstart.splitlines() if line.startswith("maskdetect predict ")]
    assert len(quick) == 3 and "--show --track" in quick[-1], quick
    lines += quick
    shutil.copytree(SAMPLE, tmp_path / "path" / "to" / "kaggle")
    voc_to_yolo(SAMPLE, tmp_path / "path" / "to" / "yolo", classes=("mask", "no-mask"),
                rename={"with_mask": "mask", "without_mask": "no-mask"})
    photo = sorted((SAMPLE / "images").glob("*.jpg"))[0]
    shutil.copy(photo, tmp_path / "photo.jpg")
    make_sample_video(photo, tmp_path / "clip.mp4", seconds=1)
    for run in ("masks", "demo"):
        shutil.copytree(bundled_model().parent, tmp_path / "workspace" / "runs" / run / "export")
    monkeypatch.chdir(tmp_path)
    for line in lines:  # in this process: the CLI's main() on the line's words, as the shell would split them
        assert main(shlex.split(line)[1:]) == 0, f"{line}\n{capsys.readouterr().err[-3000:]}"
    workspace = tmp_path / "workspace"
    assert json.loads((workspace / "data" / "two" / "manifest.json").read_text())["classes"][:2] == [
        "with_mask", "without_mask"]
    assert (workspace / "reports" / "masks").is_dir() and any((workspace / "reports" / "masks").glob("*.png"))
    assert all(line.startswith("maskdetect predict ") for line in notebook_commands())
    for name in ("annotated.jpg", "annotated.mp4", "webcam.mp4"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert json.loads((tmp_path / "detections.json").read_text())


def test_the_python_section_runs_verbatim(tmp_path, monkeypatch, capsys):
    """The README's "Python" block as written, in a folder holding ``photo.jpg`` (a sample photo) and ``clip.mp4``
    (a 1-s clip of it): the bundled model on a path and on OpenCV's BGR array (the same result), the files it
    names, and a tracked video with its monitor summary (~10 s)."""
    import json
    import shutil

    from maskdetect.sample_video import make_sample_video

    code = re.search(r"## Python\n\n```python\n(.*?)```", README, flags=re.S).group(1)
    photo = SAMPLE / "images" / "maksssksksss104.jpg"
    shutil.copy(photo, tmp_path / "photo.jpg")
    make_sample_video(photo, tmp_path / "clip.mp4", seconds=1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md (Python)", "exec"), {"__name__": "readme"})
    printed = capsys.readouterr().out
    assert "with_mask" in printed and (tmp_path / "annotated.jpg").stat().st_size > 0
    assert (tmp_path / "annotated.mp4").stat().st_size > 0 and json.loads((tmp_path / "detections.json").read_text())
    assert (tmp_path / "annotated.summary.json").is_file()  # the monitor's summary beside the video


@pytest.mark.slow
def test_every_configure_line_runs_verbatim(tmp_path, monkeypatch, capsys):
    """Every `configure` line as written (optional ``[...]`` parts left out), after the CPU recipe's `data convert`
    line, in a project folder holding a ``face-mask-kaggle/`` that is the sample; the other data
    folders the lines name are copies of that conversion, the COCO checkpoint comes from a loopback zoo (an
    archive in the zoo's layout) and is cached in the project's ``workspace/pretrained``, and a continuation finds
    the checkpoint files it names (as training leaves them). Each run's config says what its line asked for."""
    import shutil

    from maskdetect.cli import main
    from maskdetect.train import zoo
    from maskdetect.train.run import load_pipeline
    from test_pipeline import checkpoint_files
    from test_zoo import NAME, fake_checkpoint, zoo_archive

    lines = [without_optional_parts(raw) for raw, _ in readme_commands()]
    convert = [line for line in lines if line.startswith("maskdetect data convert") and KAGGLE_CONVERT in line]
    configure = [line for line in lines if line.startswith("maskdetect configure ")]
    assert len(convert) == 1 and len(configure) >= 6, lines
    project = recipe_project(tmp_path, monkeypatch)
    imagenet_stand_in(tmp_path, monkeypatch)
    made = project / dict(zip(shlex.split(convert[0]), shlex.split(convert[0])[1:]))["--out"]
    assert main(shlex.split(convert[0])[1:]) == 0
    with serve({f"/zoo/{NAME}.tar.gz": zoo_archive(fake_checkpoint(tmp_path))}) as zoo_server:
        monkeypatch.setattr(zoo, "ZOO_BASE_URL", zoo_server.url("/zoo"))
        for line in configure:
            words = shlex.split(line)
            option = dict(zip(words, words[1:]))  # an option's value is the word after it
            if not (project / option["--data"]).exists():
                shutil.copytree(made, project / option["--data"])
            if "--checkpoint" in option:  # the files the run before leaves
                checkpoint_files(project / option["--checkpoint"])
            assert main(words[1:]) == 0, f"{line}\n{capsys.readouterr().err[-3000:]}"
            config = load_pipeline(project / option["--out"] / "pipeline.config")
            assert config.train_config.num_steps == int(option["--steps"]), line
            assert config.train_config.batch_size == int(option["--batch-size"]), line
            if "--from-scratch" in words:
                assert not config.train_config.fine_tune_checkpoint, line
            elif "--backbone-weights" in words:  # a classification checkpoint built from the ImageNet weights
                assert config.train_config.fine_tune_checkpoint_type == "classification", line
                assert Path(config.train_config.fine_tune_checkpoint + ".index").is_file(), line
            else:
                expected = option.get("--checkpoint", f"workspace/pretrained/{NAME}/checkpoint/ckpt-0")
                assert config.train_config.fine_tune_checkpoint == str((project / expected).resolve()), line
        assert len(zoo_server.requests) == 1  # the COCO checkpoint is downloaded once, then cached


FAKE_PLAYER = """#!/bin/sh
# a stand-in for a sound player / notifier: records its name, its words and the event on stdin
{ echo "$(basename "$0") $*"; cat; echo; } >> "$RECORD"
"""


@pytest.mark.slow
def test_the_alert_lines_run_verbatim(tmp_path, server, smtp_server):
    """The alerts block run as a shell script, on stand-ins: camera 0 is a still 3.5-s clip of a sample photo of
    one unmasked person, whom the bundled model finds in every frame (compliance 0: below the lines' 75% for
    longer than the default 3 s), ``workspace/runs/masks/export`` is the bundled model, ``paplay``, ``afplay``,
    ``notify-send`` and ``osascript`` are scripts on PATH that record their words and the event,
    ``$SLACK_WEBHOOK_URL`` is a loopback server, and the e-mail line's ``smtp.gmail.com:587`` a loopback SMTP
    server (the one word changed: no network). Every line raises the alert and its hook receives it; no secret is
    printed."""
    import email
    import json
    import shutil

    from maskdetect.infer.predictor import bundled_model
    from maskdetect.sample_video import make_sample_video

    block = re.search(r"```bash\n(M=.*?)```", README, flags=re.S).group(1)
    assert block.count("$M ") == 6 and "--source 0 " in block and "smtp.gmail.com:587" in block
    script = block.replace("--source 0 ", "--source clip.mp4 ").replace(
        "smtp.gmail.com:587", f"127.0.0.1:{smtp_server.server_address[1]}")
    make_sample_video(SAMPLE / "images" / "maksssksksss817.jpg", tmp_path / "clip.mp4", seconds=3.5, zoom=1.0,
                      size_wh=(301, 400))  # the photo's own size: no pan, no zoom
    shutil.copytree(bundled_model().parent, tmp_path / "workspace" / "runs" / "masks" / "export")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("paplay", "afplay", "notify-send", "osascript"):
        (bin_dir / name).write_text(FAKE_PLAYER)
        (bin_dir / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "RECORD": str(tmp_path / "record.txt"), "APP_PASSWORD": "App-Passw0rd",
           "SLACK_WEBHOOK_URL": url_of(server, "/services/T0/B0/w3bhookSecret")}
    done = subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    for secret in ("w3bhookSecret", "App-Passw0rd"):
        assert secret not in done.stdout + done.stderr
    played = (tmp_path / "record.txt").read_text()
    for words in ("paplay /usr/share/sounds/freedesktop/stereo/bell.oga", "afplay /System/Library/Sounds/Glass.aiff",
                  "notify-send maskdetect mask compliance alert",
                  'osascript -e display notification "mask alert" with title "maskdetect"'):
        assert f"{words}\n" in played, played
    events = [json.loads(line) for line in played.splitlines() if line.startswith("{")]
    assert len(events) == 4 and all(e["event"] == "alert_raised" and e["compliance"] == 0.0 for e in events)
    assert [re.sub(r"on \w+:", "on SOURCE:", r["json"]["text"]) for r in server.received] == [
        "maskdetect alert on SOURCE: 0% of 1 people wear a mask correctly (below 75%) at 3.0 s"], server.received
    assert len(smtp_server.messages) == 1
    assert email.message_from_string(smtp_server.messages[0])["To"] == "ops@example.com"


# options appended to a recipe's lines that make the same work smaller (the last of a repeated option wins)
SHRINK = {"configure": ["--steps", "4"], "train": ["--recalibration-batches", "2"],
          "export": ["--calibration-images", "4"], "classifier": ["--epochs", "1"]}


def imagenet_stand_in(tmp_path: Path, monkeypatch) -> None:
    """``--backbone-weights imagenet`` served offline: Keras applications' download (out of reach here) replaced
    by a MobileNetV2 of random weights saved as that download would be (tests/test_backbone.py checks that every
    layer of such a file is restored)."""
    from maskdetect.train import backbone
    from maskdetect.download import sha256_file
    from test_backbone import write_stand_in

    stand_in = tmp_path / "mobilenet_v2_stand_in.h5"
    write_stand_in(stand_in)

    def from_keras(cache_dir):
        return backbone.BackboneWeights("keras", str(stand_in), sha256_file(stand_in), "a test's stand-in")

    monkeypatch.setattr(backbone, "_from_keras", from_keras)


@pytest.mark.slow
def test_the_cpu_recipe_runs_verbatim_with_fewer_steps(tmp_path, monkeypatch, capsys):
    """The CPU recipe's block (the bundled model's), every line as written, in a project folder holding a
    ``face-mask-kaggle/`` that is the sample, with options appended that only shrink the work (SHRINK: 4 training
    steps instead of 2,000, 600 and 2,400, so the continuations name ``ckpt-4`` where the recipe says ``ckpt-2000``
    and ``ckpt-600``, and a warmup of 1 step instead of 100;
    fewer BatchNorm and int8 calibration batches; one classifier epoch), so that it takes minutes instead of an
    hour, and the ImageNet weights from a stand-in. Each line leaves what the recipe says it makes; the
    continuation restores every weight of the first run and counts its steps from 0."""
    import json

    import numpy as np
    import tensorflow as tf

    from maskdetect.cli import main
    from maskdetect.train.run import load_pipeline

    block = re.search(r"### CPU only \(2-core.*?```bash\n(.*?)```", README, flags=re.S).group(1)
    lines = [line.split("  #")[0].strip() for line in block.replace("\\\n", " ").splitlines()
             if line.startswith("maskdetect ")]
    commands = [shlex.split(line)[1] for line in lines]
    assert commands[:3] == ["data", "configure", "train"] and commands[-2:] == ["classifier", "evaluate"], lines
    project = recipe_project(tmp_path, monkeypatch)
    imagenet_stand_in(tmp_path, monkeypatch)
    for line in lines:
        words = shlex.split(line.replace("/ckpt-2000", "/ckpt-4").replace("/ckpt-600", "/ckpt-4")
                            .replace("warmup_steps=100", "warmup_steps=1"))[1:]
        assert main(words + SHRINK.get(words[0], [])) == 0, f"{line}\n{capsys.readouterr().err[-3000:]}"
        if words[0] == "configure":  # what the line asked for, in the run's config
            option = dict(zip(words, words[1:]))
            run = project / option["--out"]
            config = load_pipeline(run / "pipeline.config")
            crops = [o.random_crop_image for o in config.train_config.data_augmentation_options
                     if o.WhichOneof("preprocessing_step") == "random_crop_image"]
            low, high = map(float, option["--zoom-in"].split(","))
            assert [(c.min_area, c.max_area) for c in crops][-1] == pytest.approx((low, high)), line
            start = "classification" if "--backbone-weights" in option else "full"
            assert config.train_config.fine_tune_checkpoint_type == start, line
        if words[0] == "train":
            assert (project / words[1] / "checkpoints" / "ckpt-4.index").is_file(), line
    assert json.loads((project / "workspace/runs/cam-320" / "backbone.json").read_text())["source"] == "keras"
    # the continuation ("full": backbone, heads and all) starts from every weight of the first run's checkpoint, and
    # counts its steps from 0 (the restored model carries its old run's step): its ckpt-4 above, not ckpt-8
    first = str(project / "workspace/runs/cam-320/checkpoints/ckpt-4")
    source, started = (tf.train.load_checkpoint(path) for path in (
        first, str(project / "workspace/runs/cam-320-x2/checkpoints/ckpt-0")))  # ckpt-0: saved before any step
    names = [name for name, _ in tf.train.list_variables(first)
             if name.startswith("model/") and "OPTIMIZER_SLOT" not in name and "_training_step" not in name]
    assert len(names) > 300
    for name in names:
        np.testing.assert_array_equal(source.get_tensor(name), started.get_tensor(name), err_msg=name)
    export = next(shlex.split(line) for line in lines if line.startswith("maskdetect export "))
    run, option = project / export[2], dict(zip(export, export[1:]))
    model = run / "export" / ("model-int8.tflite" if option.get("--quantize") == "int8" else "model.tflite")
    card = json.loads(model.with_name(model.stem + ".card.json").read_text())
    assert card["input_size"] == int(option.get("--image-size", card["trained_input_size"]))
    if "--letterbox" not in option:  # the exported run trained letterboxed (keep-aspect resizer): so is every frame
        assert load_pipeline(run / "pipeline.config").model.ssd.image_resizer.HasField("keep_aspect_ratio_resizer")
        assert json.loads((run / "export" / "tflite_input.json").read_text())["letterbox"] is True
    point = json.loads((run / "metrics-val-export-model-int8-classifier.json").read_text())["operating_point"]
    if point is not None:  # None when a 4-step model finds no face right: then there is nothing to choose
        assert card["operating_point"] == point and point["second_stage"] is True
    assert (run / "export" / "classifier.tflite").is_file()
    for line in (line for line in lines if line.startswith("maskdetect evaluate ")):
        words = shlex.split(line)
        size = dict(zip(words, words[1:])).get("--image-size")
        tag = f"val-{size}px" if size else "val-export-model-int8-classifier" if "--export" in words else "val"
        assert json.loads((project / words[2] / f"metrics-{tag}.json").read_text())["num_images"] > 0, line


# The README's other training lines (the workflow's, Roboflow's, Colab's and the bundled model's continuations)
# take hours as written and ~27 minutes shrunk: too long for every CI run, so they run on request
# (`make test-readme`), as `make demo` does.
FULL = pytest.mark.skipif(os.environ.get("MASKDETECT_FULL_README") != "1",
                          reason="~36 min: run with `make test-readme` (MASKDETECT_FULL_README=1)")


@FULL
@pytest.mark.slow
def test_every_training_line_runs_verbatim_with_fewer_steps(sample_data, tmp_path, monkeypatch, capsys):
    """Every `configure`, `train`, `evaluate`, `export` and `classifier` line of the README, in its order, as
    written (optional ``[...]`` parts left out; ``a && b`` run as two lines), in one project folder holding a
    ``face-mask-kaggle/`` that is the sample, after the CPU recipe's `data convert` line; the data
    folders the other lines name are copies of that conversion. SHRINK's options are appended (4 steps, batch 2);
    so a continuation names ``ckpt-4`` where the README says ``ckpt-3600`` (the one word changed). The COCO
    checkpoint is a real D0 checkpoint (trained 1 step here) in the zoo's layout, served over loopback."""
    import json
    import shutil

    from maskdetect.cli import main
    from maskdetect.train import zoo
    from test_zoo import NAME, zoo_archive

    raws = dict.fromkeys(raw for raw, _ in readme_commands())  # an `a && b` line is listed once per command
    lines = [part.strip() for raw in raws for part in without_optional_parts(raw).split(" && ")]
    convert = [line for line in lines if line.startswith("maskdetect data convert") and KAGGLE_CONVERT in line]
    steps = [line for line in lines if line.split()[1:2] in (["configure"], ["train"], ["evaluate"], ["export"],
                                                             ["classifier"])]
    assert len(convert) == 1 and len([s for s in steps if " train " in f" {s} "]) >= 6, steps
    project = recipe_project(tmp_path, monkeypatch)
    made = project / dict(zip(shlex.split(convert[0]), shlex.split(convert[0])[1:]))["--out"]
    assert main(shlex.split(convert[0])[1:]) == 0
    from maskdetect.train.train import train

    source_paths = tiny_configure(sample_data, tmp_path / "d0", steps=1, model="ssd_efficientdet_d0_512")
    source_result = train(source_paths.run_dir, steps_per_iteration=1, recalibration_batches=0, progress=False)
    shrink = {**SHRINK, "configure": SHRINK["configure"] + ["--batch-size", "2"]}
    ran = []
    with serve({f"/zoo/{NAME}.tar.gz": zoo_archive(source_result.checkpoint, source_paths.pipeline_config)}) as zoo_:
        monkeypatch.setattr(zoo, "ZOO_BASE_URL", zoo_.url("/zoo"))
        for line in steps:
            words = shlex.split(line.replace("/ckpt-3600", "/ckpt-4"))
            option = dict(zip(words, words[1:]))
            if words[1] == "configure" and not (project / option["--data"]).exists():
                shutil.copytree(made, project / option["--data"])
            assert main(words[1:] + shrink.get(words[1], [])) == 0, f"{line}\n{capsys.readouterr().err[-3000:]}"
            ran.append(line)
    assert len(zoo_.requests) == 1  # downloaded once, then cached in workspace/pretrained
    runs = {shlex.split(line)[2] for line in ran if line.split()[1] == "train"}
    for run in runs:
        assert (project / run / "checkpoints" / "ckpt-4.index").is_file(), run
        assert json.loads((project / run / "train_log.jsonl").read_text().splitlines()[-1])["step"] == 4, run
    for line in ran:
        words = shlex.split(line)
        run = project / words[2]
        if words[1] == "classifier":
            spec = json.loads((run / "export" / "classifier.json").read_text())
            assert spec["members"] == int(dict(zip(words, words[1:])).get("--members", 1)), line
        if words[1] == "export":
            assert any((run / "export").glob("*.card.json")) or (run / "export" / "model_card.json").is_file(), line


@FULL
@pytest.mark.slow
def test_make_demo_runs_as_written():
    """`make demo`, the README's first line, in this checkout (its run lands in workspace/runs/demo, as a user's
    does): it ends well, its training loss falls, and its annotated video and detections are written."""
    import json

    assert "make demo" in README.split("\n", 5)[3]
    result = subprocess.run(["make", "demo"], cwd=REPO, capture_output=True, text=True, timeout=3600)
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = json.loads((REPO / "workspace" / "runs" / "demo" / "demo.json").read_text())["outputs"]
    start, end = map(float, re.match(r"([\d.]+) -> ([\d.]+)", outputs["loss start -> end"]).groups())
    assert end < start, outputs["loss start -> end"]
    assert Path(outputs["annotated video"]).stat().st_size > 0 and json.loads(
        Path(outputs["detections JSON"]).read_text())

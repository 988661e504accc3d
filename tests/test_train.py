"""Training on the real OD API, tiny: the shared run trains and logs, resume after kill -9, the NaN guard, mirrored
on two logical CPUs, fine-tuning from a zoo-layout archive as "detection"."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import LOOP_MODEL, REPO, SAMPLE, run_cli, tiny_configure
from maskdetect.errors import TrainingError

pytestmark = pytest.mark.slow


def test_tiny_run_trains_and_logs(tiny_run):
    paths, result = tiny_run
    assert result.final_step == 6 and result.start_step == 0
    assert np.isfinite(result.first_loss) and np.isfinite(result.last_loss)
    assert result.checkpoint.endswith("ckpt-6")
    log = [json.loads(line) for line in paths.train_log.read_text().splitlines()]
    assert [entry["step"] for entry in log] == [3, 6]
    assert {"Loss/total_loss", "Loss/classification_loss", "learning_rate"} <= log[0].keys()
    assert list((paths.run_dir / "tensorboard" / "train").glob("events.out.tfevents.*"))
    import tensorflow as tf

    assert not tf.keras.backend.learning_phase()  # export/evaluate later in this process see inference mode


def test_resume_after_kill_9(sample_data, tmp_path):
    """Kill -9 mid-run, start again: it continues from the last checkpoint and ends at the same final step."""
    paths = tiny_configure(sample_data, tmp_path / "run", steps=12, model=LOOP_MODEL)
    cmd = [sys.executable, "-m", "maskdetect", "train", str(paths.run_dir), "--steps-per-iteration", "2",
           "--checkpoint-every", "2", "--recalibration-batches", "2"]
    log = tmp_path / "killed.log"
    with open(log, "wb") as stderr:
        process = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + 600

    def newest_step() -> int:  # the checkpoint state file, which is written after the ckpt-N files
        newest = paths.latest_checkpoint()
        return int(newest.rsplit("-", 1)[1]) if newest else -1

    while time.monotonic() < deadline and newest_step() < 4:
        assert process.poll() is None, f"training ended before it could be killed:\n{log.read_text()[-3000:]}"
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()

    killed_at = int(paths.latest_checkpoint().rsplit("-", 1)[1])
    assert 4 <= killed_at < 12
    from maskdetect.train.train import train  # in this process: the restart needs no second TensorFlow start-up

    result = train(paths.run_dir, steps_per_iteration=2, recalibration_batches=2, progress=False)
    assert result.start_step == killed_at and result.final_step == 12
    assert paths.latest_checkpoint().endswith("ckpt-12")
    log = [json.loads(line)["step"] for line in paths.train_log.read_text().splitlines()]
    assert log[-1] == 12 and killed_at + 2 in log  # the log goes on where the checkpoint left off


def test_nan_loss_stops_and_keeps_last_good_checkpoint(sample_data, tmp_path):
    from maskdetect.train.train import train

    paths = tiny_configure(sample_data, tmp_path / "run", steps=40, learning_rate=1e12, model=LOOP_MODEL,
                           overrides=["train_config.optimizer.momentum_optimizer.learning_rate."
                                      "cosine_decay_learning_rate.warmup_steps=0"])
    with pytest.raises(TrainingError, match=r"loss became (nan|inf).*last good checkpoint"):
        train(paths.run_dir, steps_per_iteration=1, checkpoint_every=1, progress=False)
    log = [json.loads(line) for line in paths.train_log.read_text().splitlines()]
    last_good = log[-1]["step"] if log else 0
    assert paths.latest_checkpoint().endswith(f"ckpt-{last_good}")


def test_mirrored_strategy_on_two_logical_cpus(sample_data, tmp_path):
    paths = tiny_configure(sample_data, tmp_path / "run", steps=2, model=LOOP_MODEL)
    done = run_cli("train", str(paths.run_dir), "--strategy", "mirrored", "--steps-per-iteration", "2",
                   "--recalibration-batches", "2")  # recalibration runs under the strategy too
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout[done.stdout.index("{"):])["final_step"] == 2


def test_fine_tune_from_zoo_archive_restores_backbone_not_class_head(tiny_run, tmp_path):
    """The tiny run's checkpoint, packed in the model zoo's layout and served over loopback, is fetched and
    fine-tuned as "detection" by a run with a different num_classes: the backbone and feature pyramid are
    restored, the class head is not."""
    import tensorflow as tf

    from data_fixtures import serve
    from maskdetect.data import convert
    from maskdetect.train.train import train
    from maskdetect.train.zoo import fetch_checkpoint
    from maskdetect.train.zoo import MODELS
    from test_zoo import zoo_archive

    source_paths, source_result = tiny_run
    name = MODELS[LOOP_MODEL].zoo_archive
    with serve({f"/{name}.tar.gz": zoo_archive(source_result.checkpoint, source_paths.pipeline_config,
                                                name=name)}) as server:
        checkpoint = fetch_checkpoint(LOOP_MODEL, cache_dir=tmp_path / "zoo", base_url=server.url(""))
    two_class = convert("voc", SAMPLE, tmp_path / "data2", split=(0.8, 0.2, 0.0), seed=1,
                        class_map=["mask_weared_incorrect=without_mask"])
    assert len(two_class.classes) == 2
    paths = tiny_configure(tmp_path / "data2", tmp_path / "run", steps=1, checkpoint=checkpoint,
                           learning_rate=1e-9)
    train(paths.run_dir, steps_per_iteration=1, recalibration_batches=0, progress=False)
    before = dict(tf.train.list_variables(source_result.checkpoint))
    reader_a = tf.train.load_checkpoint(source_result.checkpoint)
    reader_b = tf.train.load_checkpoint(str(paths.checkpoints / "ckpt-0"))  # saved before any step
    restored = pyramid = diverged = 0
    for name, shape in before.items():
        if not name.startswith("model/") or "OPTIMIZER_SLOT" in name:
            continue
        try:
            b = reader_b.get_tensor(name)
        except tf.errors.NotFoundError:
            continue
        a = reader_a.get_tensor(name)
        if "_feature_extractor" in name:  # MobileNetV2 backbone and FPN
            np.testing.assert_array_equal(a, b, err_msg=name)
            restored += 1
            pyramid += "fpn" in name.lower()
        elif "_class_predictor_layers" in name or "ClassPredictionTower" in name:
            assert a.shape != b.shape or not np.array_equal(a, b), f"{name} was restored"
            diverged += 1
    assert restored > 100 and pyramid > 10, (restored, pyramid)
    assert diverged >= 3  # the 2-class predictor starts fresh (FPNLite's tower is shared with the boxes: restored)

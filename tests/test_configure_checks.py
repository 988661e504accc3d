"""configure checks every number it writes (typed errors, nothing written) and never leaves a trained run's
config and checkpoints out of step."""

from __future__ import annotations

import pytest

from conftest import run_cli
from maskdetect.errors import ConfigError
from maskdetect.train.pipeline import configure, load_pipeline
from test_guard import tree_hash

BAD = [
    (dict(num_steps=-5), "--steps -5"),
    (dict(num_steps=0), "--steps 0"),
    (dict(learning_rate=float("nan")), "--learning-rate nan"),
    (dict(learning_rate=float("inf")), "--learning-rate inf"),
    (dict(learning_rate=-1.0), "--learning-rate -1"),
    (dict(learning_rate=0.0), "--learning-rate 0"),
    (dict(image_size=0), "--image-size 0"),
    (dict(image_size=-512), "--image-size -512"),
    (dict(image_size=100000), "--image-size 100000: expected a whole number from 32 to 2048"),
    (dict(image_size=320), "input size 320 does not suit the BiFPN"),
    (dict(model="ssd_mobilenet_v2_fpnlite_320", image_size=330), "multiple of 32"),
    (dict(batch_size=0), "--batch-size 0"),
    (dict(num_steps=2.5), "--steps 2.5"),
    (dict(overrides=["train_input_reader.max_number_of_boxes=0"]), "max_number_of_boxes must be at least 1"),
    (dict(overrides=["train_config.num_steps=0"]), "num_steps must be at least 1"),
    (dict(overrides=["train_config.batch_size=-1"]), "batch_size=-1: out of range for .*batch_size, a uint32"),
    (dict(eval_split="vall"), "--eval-split vall: .* no vall-\\*.tfrecord files; its splits are train, val$"),
    (dict(overrides=["train_config.optimizer.momentum_optimizer.learning_rate.cosine_decay_learning_rate."
                     "learning_rate_base=-0.5"]), "learning_rate_base is -0.5"),
]


@pytest.mark.parametrize("kwargs,message", BAD)
def test_bad_numbers_are_typed_errors_and_nothing_is_written(sample_data, tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        configure(sample_data, tmp_path / "run", **kwargs)
    assert not (tmp_path / "run").exists()


def test_cli_bad_numbers_end_in_an_error_line_not_a_traceback(sample_data, tmp_path):
    for option in (["--steps", "-5"], ["--learning-rate", "nan"], ["--image-size", "0"]):
        result = run_cli("configure", "--data", str(sample_data), "--out", str(tmp_path / "run"), "--from-scratch",
                         *option, timeout=300)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
        assert f"{option[0]} {option[1]}" in result.stderr
    assert not (tmp_path / "run").exists()


def test_a_trained_run_is_reconfigured_only_with_force_and_stays_in_step(sample_data, tmp_path):
    run = tmp_path / "run"
    configure(sample_data, run, image_size=256, num_steps=10)
    (run / "checkpoints").mkdir()
    for name in ("ckpt-10.index", "ckpt-10.data-00000-of-00001", "checkpoint"):
        (run / "checkpoints" / name).write_bytes(name.encode())
    (run / "train_log.jsonl").write_text('{"step": 10}\n')
    before = tree_hash(run)
    old_config = (run / "pipeline.config").read_text()
    with pytest.raises(ConfigError, match="ckpt-10.*--force"):
        configure(sample_data, run, image_size=384, num_steps=20)
    assert tree_hash(run) == before
    result = run_cli("configure", "--data", str(sample_data), "--out", str(run), "--from-scratch", "--steps", "20",
                     timeout=300)
    assert result.returncode == 2 and "--force" in result.stderr and tree_hash(run) == before

    configure(sample_data, run, image_size=384, num_steps=20, force=True)
    (old,) = (run / "superseded").iterdir()
    assert (old / "pipeline.config").read_text() == old_config  # the old config stays with its checkpoints
    assert sorted(p.name for p in (old / "checkpoints").iterdir()) == ["checkpoint", "ckpt-10.data-00000-of-00001",
                                                                      "ckpt-10.index"]
    assert (old / "train_log.jsonl").read_text() == '{"step": 10}\n'
    assert not (run / "checkpoints").exists() and not (run / "train_log.jsonl").exists()
    assert load_pipeline(run / "pipeline.config").train_config.num_steps == 20


def test_the_run_may_not_be_the_data_folder(sample_data, tmp_path):
    before = tree_hash(sample_data)
    for out in (sample_data, sample_data / "run"):
        with pytest.raises(ConfigError, match="input --data"):
            configure(sample_data, out)
    assert tree_hash(sample_data) == before


def fake_checkpoint(folder, step: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in (f"ckpt-{step}.index", f"ckpt-{step}.data-00000-of-00001", "checkpoint"):
        (folder / name).write_bytes(name.encode())


def test_force_never_moves_what_the_new_run_starts_from(sample_data, tmp_path):
    """Issue 24 #6: --force would move the run's checkpoints (and export) into superseded/, leaving the new
    config pointing at nothing; a starting point inside them is refused, and nothing moves."""
    run = tmp_path / "run"
    configure(sample_data, run, image_size=256, num_steps=10)
    fake_checkpoint(run / "checkpoints", 10)
    (run / "export").mkdir()
    (run / "export" / "weights.h5").write_bytes(b"h5")
    before = tree_hash(run)
    with pytest.raises(ConfigError, match=r"--checkpoint .*ckpt-10: lies in .*checkpoints, which --force would "
                                          r"move to superseded/<time>/.*Copy it out of the run first"):
        configure(sample_data, run, checkpoint=run / "checkpoints" / "ckpt-10", force=True)
    with pytest.raises(ConfigError, match=r"--backbone-weights .*weights.h5: lies in .*export, which --force"):
        configure(sample_data, run, "ssd_mobilenet_v2_fpnlite_320", backbone_weights=run / "export" / "weights.h5",
                  force=True)
    assert tree_hash(run) == before
    fake_checkpoint(tmp_path / "elsewhere", 10)  # outside the run: --force proceeds and points at it
    configure(sample_data, run, checkpoint=tmp_path / "elsewhere" / "ckpt-10", force=True)
    assert load_pipeline(run / "pipeline.config").train_config.fine_tune_checkpoint == \
        str(tmp_path / "elsewhere" / "ckpt-10")


def test_out_must_be_new_empty_or_a_run_never_another_folder(sample_data, tmp_path):
    """Issue 24 #3: configure --out at another dataset folder (or a model-zoo folder, or any folder configure did not
    make) refuses instead of replacing its label_map.pbtxt."""
    import shutil

    other = shutil.copytree(sample_data, tmp_path / "other-data")
    zoo = tmp_path / "zoo-model"
    zoo.mkdir()
    (zoo / "pipeline.config").write_text("model { ssd { num_classes: 90 } }\n")
    for folder in (other, zoo):
        before = tree_hash(folder)
        with pytest.raises(ConfigError, match=r"--out .*: holds .* but is not a run made by `maskdetect configure`"):
            configure(sample_data, folder)
        assert tree_hash(folder) == before
    (tmp_path / "empty").mkdir()
    configure(sample_data, tmp_path / "empty")  # a new or empty folder, or a run (reconfigured) is fine
    configure(sample_data, tmp_path / "empty", num_steps=5)

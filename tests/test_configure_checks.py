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
    (dict(image_size=320), "input size 320 does not suit the BiFPN"),
    (dict(model="ssd_mobilenet_v2_fpnlite_320", image_size=330), "multiple of 32"),
    (dict(batch_size=0), "--batch-size 0"),
    (dict(num_steps=2.5), "--steps 2.5"),
    (dict(overrides=["train_input_reader.max_number_of_boxes=0"]), "max_number_of_boxes must be at least 1"),
    (dict(overrides=["train_config.num_steps=0"]), "num_steps must be at least 1"),
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

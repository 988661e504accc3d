"""``maskdetect configure | train | evaluate | export`` (maskdetect/cli/run.py) in process, without training: the
run directory it writes, and the clear errors (exit code 2) for what is not a run."""

from __future__ import annotations

import pytest

from maskdetect.cli import main as cli_main
from maskdetect.train.run import Run


def test_configure_writes_a_run(sample_data, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli_main(["configure", "--data", str(sample_data), "--out", str(out), "--from-scratch", "--image-size",
                     "256", "--batch-size", "2", "--steps", "9", "--set", "train_input_reader.max_number_of_boxes=150"]) == 0
    run = Run.open(out)
    assert capsys.readouterr().out.strip() == str(run.pipeline_config)
    assert run.pipeline.train_config.num_steps == 9 and run.pipeline.train_input_reader.max_number_of_boxes == 150
    assert not run.pipeline.train_config.fine_tune_checkpoint and run.class_names[0] == "with_mask"


def test_a_bad_override_is_a_clear_error(sample_data, tmp_path, capsys):
    code = cli_main(["configure", "--data", str(sample_data), "--out", str(tmp_path / "run"), "--from-scratch",
                     "--set", "train_config.no_such_field=1"])
    assert code == 2 and "no_such_field" in capsys.readouterr().err
    assert not (tmp_path / "run" / "pipeline.config").exists()


@pytest.mark.parametrize("command", [["evaluate"], ["export"], ["export", "--format", "tflite"], ["train"]])
def test_commands_on_a_folder_that_is_not_a_run(tmp_path, capsys, command):
    assert cli_main([command[0], str(tmp_path), *command[1:]]) == 2
    err = capsys.readouterr().err
    assert f"maskdetect {command[0]}: error:" in err and "not a run directory" in err and "maskdetect configure" in err

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


@pytest.mark.parametrize("args, shown", [
    (["train", "{run}", "--steps-per-iteration", "0"], "--steps-per-iteration 0 is out of range: expected a whole number"),
    (["train", "{run}", "--steps-per-iteration", "-3"], "--steps-per-iteration -3"),
    (["train", "{run}", "--checkpoint-every", "-1"], "--checkpoint-every -1"),
    (["train", "{run}", "--recalibration-batches", "-5"], "--recalibration-batches -5 is out of range: expected a "
                                                          "whole number at least 0"),
    (["configure", "--data", "{data}", "--out", "{new}", "--from-scratch", "--image-size", "100000"],
     "--image-size 100000"),
    (["configure", "--data", "{data}", "--out", "{new}", "--from-scratch", "--set", "train_config.batch_size=-1"],
     "train_config.batch_size=-1: out of range"),
    (["configure", "--data", "{data}", "--out", "{new}", "--from-scratch", "--eval-split", "vall"],
     "its splits are train, val"),
    (["configure", "--data", "{data}", "--out", "{new}", "--model", "ssd_efficientdet_d0_512", "--backbone-weights",
      "imagenet"], "they exist for ssd_mobilenet_v2_fpnlite_320, ssd_mobilenet_v2_fpnlite_640"),
    (["demo", "--out", "{new}/runs/demo", "--steps", "-5"], "--steps -5"),
    (["export", "{run}", "--letterbox", "0.5"], "'0.5': expected always, never or an aspect ratio from 1 to 100"),
    (["export", "{run}", "--letterbox", "sometimes"], "argument --letterbox: 'sometimes': expected always"),
])
def test_bad_options_are_refused_in_one_line_before_any_work(sample_data, tmp_path, capsys, args, shown):
    """Issue 24 #12: exit 2, one line naming the option, nothing written (the demo converts no sample, training
    builds nothing), no traceback."""
    from maskdetect.train.pipeline import configure
    from test_guard import tree_hash

    run = configure(sample_data, tmp_path / "run", image_size=256, batch_size=2, num_steps=3)
    before = tree_hash(tmp_path)
    values = {"run": str(run.run_dir), "data": str(sample_data), "new": str(tmp_path / "new")}
    try:  # numbers are refused by the typed option layer while parsing (argparse exits), the rest by the command
        code = cli_main([arg.format(**values) for arg in args])
    except SystemExit as exit_:
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err
    assert shown in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert tree_hash(tmp_path) == before


@pytest.mark.parametrize("text, value", [("always", True), ("Never", False), ("1.5", 1.5), ("1", 1.0)])
def test_export_letterbox_is_always_never_or_an_aspect_ratio(text, value):
    from maskdetect.cli import options

    assert options.letterbox(text) is value if isinstance(value, bool) else options.letterbox(text) == value


def test_configure_checkpoint_coco_is_fetched_by_configure_itself(sample_data, tmp_path, monkeypatch):
    """The CLI's default start (coco) goes through configure(checkpoint="coco"), which fetches the zoo checkpoint
    into the pretrained cache: the CLI and the API behave alike (served over loopback in the zoo's layout)."""
    from data_fixtures import serve
    from test_zoo import fake_checkpoint, zoo_archive

    from maskdetect.train import zoo

    name = zoo.MODELS["ssd_mobilenet_v2_fpnlite_320"].zoo_archive
    with serve({f"/{name}.tar.gz": zoo_archive(fake_checkpoint(tmp_path), name=name)}) as server:
        monkeypatch.setattr(zoo, "ZOO_BASE_URL", server.url(""))
        monkeypatch.chdir(tmp_path)  # the cache is workspace/pretrained under the working folder
        assert cli_main(["configure", "--data", str(sample_data), "--out", str(tmp_path / "run"), "--model",
                         "ssd_mobilenet_v2_fpnlite_320"]) == 0
    train_config = Run.open(tmp_path / "run").pipeline.train_config
    assert train_config.fine_tune_checkpoint == str(tmp_path / "workspace" / "pretrained" / name / "checkpoint"
                                                    / "ckpt-0")
    assert train_config.fine_tune_checkpoint_type == "detection"

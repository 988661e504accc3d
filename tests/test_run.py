"""The run directory object (maskdetect.train.run): its files, the pipeline parsed once, label map, checkpoints,
metrics. Made by configure on the bundled sample (no training)."""

from __future__ import annotations

import json
import os

import pytest

from maskdetect.errors import ConfigError
from maskdetect.train.pipeline import configure
from maskdetect.train.run import Run, load_pipeline, save_pipeline


@pytest.fixture(scope="module")
def run(sample_data, tmp_path_factory) -> Run:
    return configure(sample_data, tmp_path_factory.mktemp("runs") / "r", image_size=256, batch_size=2, num_steps=7)


def test_configure_returns_the_run_and_its_files(run, sample_data):
    assert isinstance(run, Run) and Run.open(run) is run and Run.open(run.run_dir).run_dir == run.run_dir
    assert os.fspath(run) == str(run.run_dir) and run.run_dir.is_absolute()
    assert run.pipeline_config.is_file() and run.label_map.is_file() and run.data_manifest.is_file()
    assert (run.saved_model, run.tflite) == (run.exports / "saved_model", run.exports / "model.tflite")
    assert run.metrics_path("val-export") == run.run_dir / "metrics-val-export.json"
    assert run.class_names == ["with_mask", "without_mask", "mask_weared_incorrect"]
    assert run.data_info()["data_dir"] == str(sample_data)


def test_the_pipeline_is_parsed_once_and_configs_are_copies(run):
    assert run.pipeline is run.pipeline and run.pipeline.train_config.num_steps == 7
    configs = run.configs()
    configs["train_config"].num_steps = 99  # a caller's edit stays in its copy
    assert run.pipeline.train_config.num_steps == 7 and run.configs()["model"] == run.pipeline.model
    assert load_pipeline(run.pipeline_config) == run.pipeline


def test_checkpoints_and_metrics(run):
    assert run.latest_checkpoint() is None
    with pytest.raises(ConfigError, match="run `maskdetect train` first"):
        run.require_checkpoint()
    assert run.metrics() == {}
    run.metrics_path("val").write_text(json.dumps({"mAP@0.5": 0.5}))
    try:
        assert run.metrics() == {"metrics-val": {"mAP@0.5": 0.5}}
    finally:
        run.metrics_path("val").unlink()


def test_a_folder_without_pipeline_config_is_not_a_run(tmp_path):
    with pytest.raises(ConfigError, match="not a run directory.*maskdetect configure"):
        Run.open(tmp_path)
    (tmp_path / "pipeline.config").write_text("model { ssd { num_classes: 3 } }\n")
    assert Run.open(tmp_path).pipeline.model.ssd.num_classes == 3
    (tmp_path / "pipeline.config").write_text("model { nonsense")
    with pytest.raises(ConfigError, match="not a valid pipeline.config"):
        Run(tmp_path).pipeline  # noqa: B018


def test_save_and_load_round_trip(run, tmp_path):
    saved = save_pipeline(run.pipeline, tmp_path / "copy.config")
    assert load_pipeline(saved) == run.pipeline


def test_record_files_come_from_the_manifest_else_from_the_matching_reader(run, sample_data, tmp_path):
    from maskdetect.errors import DataError

    assert run.record_files("train") == [str(p) for p in sorted(sample_data.glob("train-*.tfrecord"))]
    assert run.record_files("val") == [str(p) for p in sorted(sample_data.glob("val-*.tfrecord"))]
    with pytest.raises(DataError, match="no test-"):
        run.record_files("test")
    (tmp_path / "pipeline.config").write_text(
        'train_input_reader { tf_record_input_reader { input_path: "/d/train-0.tfrecord" } }\n'
        'eval_input_reader { tf_record_input_reader { input_path: "/d/val-0.tfrecord" } }\n')
    bare = Run(tmp_path)  # no data manifest: a train split never falls back to the eval records
    assert bare.record_files("train") == ["/d/train-0.tfrecord"]
    assert bare.record_files("val") == ["/d/val-0.tfrecord"]

"""configure: the pipeline.config is built through the proto API, every override checked against the schema."""

from __future__ import annotations

import pytest

from maskdetect.errors import ConfigError, DataError
from maskdetect.train.pipeline import MODELS, configure, parse_overrides, scaled_schedule, set_value
from maskdetect.train.run import load_pipeline


def checkpoint_files(prefix):
    """A checkpoint's files, as `configure` looks for them (it reads none)."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    for suffix in (".index", ".data-00000-of-00001"):
        prefix.with_name(prefix.name + suffix).write_bytes(b"")
    return prefix


def test_configure_fills_everything(sample_data, tmp_path):
    paths = configure(sample_data, tmp_path / "run", batch_size=4, num_steps=1000,
                      checkpoint=checkpoint_files(tmp_path / "zoo" / "checkpoint" / "ckpt-0"))
    p = load_pipeline(paths.pipeline_config)
    assert p.model.ssd.num_classes == 3
    assert p.model.ssd.image_resizer.keep_aspect_ratio_resizer.max_dimension == 512
    assert p.train_config.batch_size == 4 and p.train_config.num_steps == 1000
    assert not p.train_config.use_bfloat16
    assert p.train_config.fine_tune_checkpoint.endswith("checkpoint/ckpt-0")
    assert p.train_config.fine_tune_checkpoint_type == "detection"
    cosine = p.train_config.optimizer.momentum_optimizer.learning_rate.cosine_decay_learning_rate
    assert cosine.learning_rate_base == pytest.approx(0.08 * 4 / 128)
    assert cosine.total_steps == 1000 and cosine.warmup_steps == 100
    assert cosine.warmup_learning_rate < cosine.learning_rate_base
    assert p.train_input_reader.label_map_path == str(paths.label_map)
    assert all("train-" in f for f in p.train_input_reader.tf_record_input_reader.input_path)
    assert all("val-" in f for f in p.eval_input_reader[0].tf_record_input_reader.input_path)
    assert paths.label_map.read_text() == (sample_data / "label_map.pbtxt").read_text()
    assert paths.data_manifest.exists()


def test_a_checkpoint_that_is_not_there_is_refused_before_training(sample_data, tmp_path):
    with pytest.raises(ConfigError, match=r"--checkpoint .*ckpt-3600: no checkpoint ckpt-3600.index .*e\.g\. "):
        configure(sample_data, tmp_path / "run", checkpoint=tmp_path / "runs" / "a" / "checkpoints" / "ckpt-3600")
    checkpoint_files(tmp_path / "runs" / "a" / "checkpoints" / "ckpt-900")
    checkpoint_files(tmp_path / "runs" / "a" / "checkpoints" / "ckpt-1200")
    for given in ("ckpt-3600", ""):  # a typo in the step, or the folder itself
        with pytest.raises(ConfigError, match=r"the newest checkpoint there is .*checkpoints/ckpt-1200$"):
            configure(sample_data, tmp_path / "run", checkpoint=tmp_path / "runs" / "a" / "checkpoints" / given)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("model", sorted(MODELS))
def test_every_model_configures(sample_data, tmp_path, model):
    paths = configure(sample_data, tmp_path / model, model)
    p = load_pipeline(paths.pipeline_config)
    assert p.model.ssd.num_classes == 3
    if model == "efficientdet_d1_640":
        assert p.model.ssd.feature_extractor.type == "ssd_efficientnet-b1_bifpn_keras"
        assert p.model.ssd.image_resizer.keep_aspect_ratio_resizer.max_dimension == 640
    if model.startswith("ssd_mobilenet"):
        assert p.model.ssd.image_resizer.fixed_shape_resizer.height == int(model.rsplit("_", 1)[1])


def test_scratch_clears_checkpoint_and_uses_he_initialisers(sample_data, tmp_path):
    p = load_pipeline(configure(sample_data, tmp_path / "run").pipeline_config)
    assert not p.train_config.fine_tune_checkpoint and not p.train_config.HasField("fine_tune_checkpoint_type")
    for conv in (p.model.ssd.feature_extractor.conv_hyperparams,
                 p.model.ssd.box_predictor.weight_shared_convolutional_box_predictor.conv_hyperparams):
        assert conv.initializer.WhichOneof("initializer_oneof") == "variance_scaling_initializer"
        assert conv.initializer.variance_scaling_initializer.factor == 2.0
    assert p.train_input_reader.max_number_of_boxes == 128  # the OD API pads to this; the Kaggle set has 115
    fine_tune = load_pipeline(configure(sample_data, tmp_path / "ft",
                                        checkpoint=checkpoint_files(tmp_path / "ckpt-0")).pipeline_config)
    assert fine_tune.model.ssd.feature_extractor.conv_hyperparams.initializer.WhichOneof(
        "initializer_oneof") == "truncated_normal_initializer"  # the zoo's, as the checkpoint was trained


def test_adam_replaces_momentum_with_the_same_schedule(sample_data, tmp_path):
    p = load_pipeline(configure(sample_data, tmp_path / "run", batch_size=4, num_steps=500,
                                optimizer="adam").pipeline_config)
    assert p.train_config.optimizer.WhichOneof("optimizer") == "adam_optimizer"
    cosine = p.train_config.optimizer.adam_optimizer.learning_rate.cosine_decay_learning_rate
    assert cosine.learning_rate_base == pytest.approx(0.002) and cosine.total_steps == 500
    assert cosine.warmup_steps == 50 and cosine.warmup_learning_rate == pytest.approx(0.0002)
    with pytest.raises(ConfigError, match="unknown optimizer 'sgd'; choose one of momentum, adam"):
        configure(sample_data, tmp_path / "bad", optimizer="sgd")



def test_zoom_in_adds_one_crop_around_whole_faces_and_bad_areas_are_refused_before_writing(sample_data, tmp_path):
    p = load_pipeline(configure(sample_data, tmp_path / "run", zoom_in=(0.01, 0.25)).pipeline_config)
    template = load_pipeline(configure(sample_data, tmp_path / "plain").pipeline_config)
    options = p.train_config.data_augmentation_options
    assert len(options) == len(template.train_config.data_augmentation_options) + 1
    crop = options[-1].random_crop_image
    assert (crop.min_area, crop.max_area) == pytest.approx((0.01, 0.25))
    assert crop.min_object_covered == 1.0 and crop.random_coef == pytest.approx(0.5) and crop.clip_boxes
    for bad in ((0.25, 0.01), (0.0, 0.5), (0.1, 1.5)):
        with pytest.raises(ConfigError, match="--zoom-in"):
            configure(sample_data, tmp_path / "bad", zoom_in=bad)
    assert not (tmp_path / "bad").exists()

@pytest.mark.parametrize("key, value, check", [
    ("train_config.batch_size", "16", lambda p: p.train_config.batch_size == 16),
    ("train_config.use_bfloat16", "false", lambda p: p.train_config.use_bfloat16 is False),
    ("model.ssd.post_processing.batch_non_max_suppression.iou_threshold", "0.6",
     lambda p: abs(p.model.ssd.post_processing.batch_non_max_suppression.iou_threshold - 0.6) < 1e-6),
    ("model.ssd.post_processing.score_converter", "SOFTMAX",
     lambda p: p.model.ssd.post_processing.score_converter == 2),
    ("eval_input_reader.0.shuffle", "true", lambda p: p.eval_input_reader[0].shuffle),
    ("model.ssd.anchor_generator.multiscale_anchor_generator.aspect_ratios", "1.0,0.75",
     lambda p: list(p.model.ssd.anchor_generator.multiscale_anchor_generator.aspect_ratios) == [1.0, 0.75]),
])
def test_overrides_round_trip(sample_data, tmp_path, key, value, check):
    paths = configure(sample_data, tmp_path / "run", overrides=[f"{key}={value}"])
    assert check(load_pipeline(paths.pipeline_config))


@pytest.mark.parametrize("override, message", [
    ("train_config.batch_sise=4", "no field 'batch_sise'.*Did you mean batch_size"),
    ("train_config.batch_size=four", "'four' is not an integer"),
    ("train_config.batch_size=2.5", "'2.5' is not an integer"),
    ("train_config.use_bfloat16=maybe", "true/false"),
    ("model.ssd.post_processing.score_converter=TANH", "not one of IDENTITY, SIGMOID, SOFTMAX"),
    ("train_config.optimizer=1", "is a message"),
    ("train_config.batch_size.x=1", "is a value"),
    ("train_config.batch_size", "expected dotted.key=value"),
    ("train_config.batch_size=0", "batch_size must be at least 1"),
])
def test_bad_overrides_are_clear(sample_data, tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        configure(sample_data, tmp_path / "run", overrides=[override])
    assert not (tmp_path / "run" / "pipeline.config").exists()


def test_unknown_model_and_missing_data(sample_data, tmp_path):
    with pytest.raises(ConfigError, match="unknown model 'yolo'"):
        configure(sample_data, tmp_path / "run", "yolo")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no label_map.pbtxt"):
        configure(tmp_path / "empty", tmp_path / "run")


def test_schedule_scales_with_batch_and_steps():
    assert scaled_schedule(128, 300000) == {"learning_rate_base": 0.08, "total_steps": 300000,
                                            "warmup_learning_rate": 0.008, "warmup_steps": 2500}
    small = scaled_schedule(8, 500)
    assert small["learning_rate_base"] == pytest.approx(0.005) and small["warmup_steps"] == 50


def test_set_value_direct_and_parse():
    from object_detection.protos import pipeline_pb2

    p = pipeline_pb2.TrainEvalPipelineConfig()
    set_value(p, "model.ssd.image_resizer.fixed_shape_resizer.height", 320)
    assert p.model.ssd.image_resizer.WhichOneof("image_resizer_oneof") == "fixed_shape_resizer"
    assert parse_overrides(["a.b = 1", "c=x=y"]) == {"a.b": " 1", "c": "x=y"}

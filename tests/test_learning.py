"""BatchNorm statistics after training: inference must normalise with what training saw (issue 11's root cause:
moving averages that stay near their initial values when a model is trained from scratch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import maskdetect  # noqa: F401  (the OD API compatibility layer goes first)


def test_recalibration_sets_moving_statistics_to_the_average_batch_statistics():
    import tensorflow as tf

    from maskdetect.train.train import batchnorm_layers, recalibrate_batchnorm

    class Tiny(tf.keras.Model):  # the one method recalibrate_batchnorm calls on a detection model
        def __init__(self):
            super().__init__()
            self.conv = tf.keras.layers.Conv2D(4, 3, kernel_initializer=tf.keras.initializers.RandomNormal(0, 0.01))
            self.norm = tf.keras.layers.BatchNormalization(momentum=0.997)

        def predict(self, images, true_shapes):  # noqa: D102 (the DetectionModel signature)
            return self.norm(self.conv(images))

    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, size=(4, 8, 8, 3)).astype(np.float32) for _ in range(5)]
    model = Tiny()
    model.predict(tf.constant(batches[0]), None)
    tf.keras.backend.set_learning_phase(False)
    [layer] = batchnorm_layers(model)
    assert np.allclose(layer.moving_variance.numpy(), 1.0)  # far from the conv's tiny outputs

    data = [({"image": tf.constant(b), "true_image_shape": tf.constant([[8, 8, 3]] * 4)}, {}) for b in batches]
    used = recalibrate_batchnorm(model, iter(data * 2), num_batches=5, progress=False)

    assert used == 5
    outputs = [model.conv(b).numpy().reshape(-1, 4) for b in batches]
    expected_mean = np.mean([o.mean(axis=0) for o in outputs], axis=0)
    expected_var = np.mean([o.var(axis=0, ddof=1) for o in outputs], axis=0)  # Keras keeps the unbiased variance
    np.testing.assert_allclose(layer.moving_mean.numpy(), expected_mean, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(layer.moving_variance.numpy(), expected_var, rtol=1e-3)
    assert layer.momentum == 0.997  # restored
    assert not tf.keras.backend.learning_phase()  # back to inference


def batchnorm_ratios(pipeline_config: str, checkpoint: str) -> list[float]:
    """Per BatchNorm layer of `checkpoint`, the median over channels of its moving variance divided by the
    variance of its inputs in inference mode, on 8 training batches drawn with seed 0 by one reader in file order
    (so neither the global seed nor the parallel interleave adds an order of its own)."""
    import tensorflow as tf
    from object_detection import inputs, model_lib_v2
    from object_detection.utils import config_util
    from tf_keras.src.layers.normalization.batch_normalization import BatchNormalizationBase

    from maskdetect.train.train import batchnorm_layers

    configs = config_util.get_configs_from_pipeline_file(pipeline_config)
    tf.keras.utils.set_random_seed(0)
    tf.keras.backend.set_learning_phase(False)
    reader = configs["train_input_config"]
    reader.shuffle, reader.num_readers = False, 1
    model = model_lib_v2.MODEL_BUILD_UTIL_MAP["detection_model_fn_base"](
        model_config=configs["model"], is_training=True, add_summaries=False)
    batches = iter(inputs.train_input(configs["train_config"], reader, configs["model"], model=model))
    features, _ = next(batches)
    model.predict(features["image"], features["true_image_shape"])
    tf.train.Checkpoint(model=model).restore(checkpoint).expect_partial()

    observed: dict[int, list] = {}
    original = BatchNormalizationBase.call

    def recording(layer, inputs, training=None, mask=None):  # the statistics of this layer's inputs
        observed.setdefault(id(layer), []).append(tf.math.reduce_variance(inputs, axis=[0, 1, 2]).numpy())
        return original(layer, inputs, training=training, mask=mask)

    BatchNormalizationBase.call = recording
    try:
        for _ in range(8):  # inference mode (moving statistics), on several batches: one batch of 2 is noisy
            model.predict(features["image"], features["true_image_shape"])
            features, _ = next(batches)
    finally:
        BatchNormalizationBase.call = original
    return [float(np.median(layer.moving_variance.numpy() / (np.mean(observed[id(layer)], axis=0) + 1e-12)))
            for layer in batchnorm_layers(model) if id(layer) in observed]


@pytest.mark.slow
def test_trained_checkpoint_normalises_with_the_statistics_training_saw(tiny_run):
    """Every BatchNorm layer of the tiny run's final checkpoint has moving variances within a factor of 10 of the
    variances a few training batches produce in inference mode (before the fix: 0.99**steps, up to 1e10 times too
    large). Measured in a fresh process: in the test session's own, what earlier tests left in TensorFlow's and
    Keras' global state changed the batches drawn (median ratios of 0.033 and 1.5e-4 were seen in CI only)."""
    import json
    import subprocess
    import sys

    paths, result = tiny_run
    assert result.batchnorm_recalibrated > 0
    code = ("import json, sys; import maskdetect; from test_learning import batchnorm_ratios; "
            "print(json.dumps(batchnorm_ratios(sys.argv[1], sys.argv[2])))")
    done = subprocess.run([sys.executable, "-c", code, str(paths.pipeline_config), result.checkpoint],
                          capture_output=True, text=True, cwd=Path(__file__).parent, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    ratios = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(ratios) > 20
    assert 0.1 < np.median(ratios) < 10.0, np.percentile(ratios, [0, 50, 100])  # unfixed: 1e4 to 1e10


# The sample images whose smallest face is at least 19 px at a 256-px input: 17 images, 46 faces, all three
# classes. The proof is about learning; faces below the smallest anchors are the recipe's problem, not this one.
PROOF_IMAGES = ("maksssksksss592", "maksssksksss324", "maksssksksss69", "maksssksksss490", "maksssksksss561",
                "maksssksksss713", "maksssksksss366", "maksssksksss817", "maksssksksss562", "maksssksksss406",
                "maksssksksss346", "maksssksksss321", "maksssksksss91", "maksssksksss741", "maksssksksss495",
                "maksssksksss710", "maksssksksss760")


# (model, input size, steps): Adam from scratch, batch 4, no augmentation. MobileNet at 300 steps scored AP@0.5
# 1.0 / 1.0 / 1.0 (docs/experiments.md, P1; ~5 min on a quiet machine). D0 at 300 steps scored 0.99 / 0.61 / 0.94
# (P2): it learns, but reaching the 0.9 bar needs more steps than CI can spare today; see docs/experiments.md.
PROOF_RUNS = [("ssd_mobilenet_v2_fpnlite_320", 256, 300)]


@pytest.fixture(scope="module")
def proof_data(tmp_path_factory):
    import shutil

    from conftest import SAMPLE
    from maskdetect.data import convert

    source = tmp_path_factory.mktemp("proof") / "voc"
    for folder in ("images", "annotations"):
        (source / folder).mkdir(parents=True)
    for stem in PROOF_IMAGES:
        shutil.copy(SAMPLE / "images" / f"{stem}.jpg", source / "images")
        shutil.copy(SAMPLE / "annotations" / f"{stem}.xml", source / "annotations")
    out = source.parent / "records"
    convert("voc", source, out, split=(1.0, 0.0, 0.0), seed=0)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("model, image_size, steps", PROOF_RUNS)
def test_the_chain_learns_the_faces_it_was_trained_on(proof_data, tmp_path, model, image_size, steps):
    """Trained from scratch on 17 images without augmentation and scored on the same images, mean AP@0.5 >= 0.9
    and every class >= 0.75: labels, boxes, anchors, the training step, the BatchNorm statistics, the checkpoint
    restore and the evaluator all agree (before the fixes of issue 11: 0.00003)."""
    from maskdetect.train.evaluate import evaluate
    from maskdetect.train.pipeline import configure, load_pipeline, save_pipeline
    from maskdetect.train.train import train

    run = configure(proof_data, tmp_path / "run", model=model, image_size=image_size, batch_size=4,
                    num_steps=steps, optimizer="adam")
    pipeline = load_pipeline(run.pipeline_config)
    del pipeline.train_config.data_augmentation_options[:]  # memorising: the images exactly as evaluated
    save_pipeline(pipeline, run.pipeline_config)
    # 20 batches of 4 recalibrate BatchNorm over the 17 images about five times (the default 50 is for real data)
    result = train(run.run_dir, steps_per_iteration=50, recalibration_batches=20, progress=False)
    assert result.last_loss < 0.5 * result.first_loss

    metrics = evaluate(run.run_dir, split="train", progress=False)
    present = {name: ap for name, ap in metrics["AP@0.5"].items() if metrics["num_groundtruth"][name]}
    assert len(present) == 3
    # measured: 1.0 / 1.0 / 1.0 (P1) and, in CI on 2026-11-29, 1.0 / 1.0 / 0.858 — the incorrect class has a few
    # faces in these images, so one miss costs it 0.14 (the input pipeline's parallel order is not seeded); a
    # broken chain scores ~0 (issue 11)
    assert np.mean(list(present.values())) >= 0.9 and min(present.values()) >= 0.75, metrics["AP@0.5"]

"""Train a configured run with the OD API's TF2 training step (``model_lib_v2.eager_train_step``).

The loop is ``model_lib_v2.train_loop``'s, made fit for people: a progress bar (step, loss, steps/s, ETA),
a JSON-lines training log, TensorBoard scalars, checkpoints every N steps *and* at the end, resume from the
newest checkpoint after the process was killed, and a guard that stops on a non-finite loss while keeping
the last good checkpoint on disk.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from maskdetect.errors import ConfigError, TrainingError
from maskdetect.train.pipeline import check_pipeline
from maskdetect.train.run import Run

logger = logging.getLogger(__name__)

STRATEGIES = ("default", "mirrored", "tpu")


@dataclass
class TrainResult:
    start_step: int
    final_step: int
    first_loss: float | None
    last_loss: float | None
    steps_per_sec: float | None
    seconds: float
    checkpoint: str | None
    batchnorm_recalibrated: int = 0


def make_strategy(name: str = "default", *, tpu_address: str | None = None, cpu_replicas: int = 2):
    """A ``tf.distribute`` strategy: the default one, Mirrored (all GPUs; on a machine without GPUs,
    `cpu_replicas` logical CPU devices, which must be set up before TensorFlow starts), or TPU (Colab)."""
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        if tf.config.list_physical_devices("GPU"):
            return tf.distribute.MirroredStrategy()
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:  # listing logical devices would start the runtime, after which this is refused
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_replicas)
        except RuntimeError as exc:
            if len(tf.config.list_logical_devices("CPU")) < cpu_replicas:
                raise ConfigError("--strategy mirrored on CPU needs logical devices set up before TensorFlow "
                                  "starts; run training in a fresh process") from exc
        devices = [d.name for d in tf.config.list_logical_devices("CPU")][:cpu_replicas]
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address or "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ConfigError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")


def leave_training_mode() -> None:
    """``model_lib_v2.eager_train_step`` sets the Keras learning phase to "training" for the whole process;
    put it back, or a model exported or evaluated later in the same process keeps BatchNorm in training mode
    (batch statistics; TFLite conversion then needs Flex ops)."""
    import tensorflow as tf

    tf.keras.backend.set_learning_phase(False)


@contextlib.contextmanager
def _leaves_training_mode():
    try:
        yield
    finally:
        leave_training_mode()


def batchnorm_layers(model) -> list:
    """The built Keras BatchNormalization layers of a detection model (backbone, FPN/BiFPN and heads)."""
    from tf_keras.src.layers.normalization.batch_normalization import BatchNormalizationBase

    return [layer for layer in model.submodules if isinstance(layer, BatchNormalizationBase) and layer.built]


def recalibrate_batchnorm(model, batches, num_batches: int, *, progress: bool = True) -> int:
    """Set every BatchNorm layer's moving mean and variance to the average of its batch statistics over
    `num_batches` training batches, the weights fixed; returns the number of batches used.

    Why: inference normalises with the moving statistics, which training keeps as an exponential average that
    starts at mean 0, variance 1 and moves by ``1 - decay`` per step. Trained from scratch, the activations
    before a BatchNorm have variances of 1e-4 to 1e-10 (the templates' small initialisers), so after N steps
    the moving variance is still about ``decay**N`` (0.997**600 = 0.17): far from the truth, which flattens
    every activation at inference and gives every image the same scores. Averaging the batch statistics of
    the final weights (as SWA's ``bn_update`` does) makes inference see what training saw.
    """
    import numpy as np
    import tensorflow as tf
    from tqdm.auto import tqdm

    layers = [layer for layer in batchnorm_layers(model) if layer.trainable]
    if not layers or num_batches < 1:
        return 0
    momenta = [layer.momentum for layer in layers]
    sums = [[np.zeros(layer.moving_mean.shape, np.float64), np.zeros(layer.moving_variance.shape, np.float64)]
            for layer in layers]
    for layer in layers:
        layer.momentum = 0.0  # each batch's statistics replace the moving ones; we average them here

    @tf.function
    def forward(images, true_shapes):
        model.predict(images, true_shapes)

    tf.keras.backend.set_learning_phase(True)
    used = 0
    try:
        for features, _ in tqdm(batches, total=num_batches, desc="batchnorm", unit="batch", disable=not progress,
                                dynamic_ncols=True):
            forward(features["image"], features["true_image_shape"])
            for layer, acc in zip(layers, sums):
                acc[0] += layer.moving_mean.numpy()
                acc[1] += layer.moving_variance.numpy()
            used += 1
            if used >= num_batches:
                break
    finally:
        leave_training_mode()
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    if used:
        for layer, (mean, variance) in zip(layers, sums):
            layer.moving_mean.assign((mean / used).astype(np.float32))
            layer.moving_variance.assign((variance / used).astype(np.float32))
    return used


def train(run_dir: Run | str | Path, *, num_steps: int | None = None, strategy: str = "default",
          steps_per_iteration: int = 10, checkpoint_every: int | None = None, max_to_keep: int = 5,
          recalibration_batches: int = 50, seed: int | None = 0, progress: bool = True) -> TrainResult:
    """Train the run in `run_dir` (made by :func:`maskdetect.train.pipeline.configure`) up to `num_steps`.

    Starts from the newest checkpoint in ``run_dir/checkpoints`` if there is one (resume), else from the
    config's ``fine_tune_checkpoint`` (if any), else from scratch. When the steps are done, the BatchNorm
    statistics are recomputed over `recalibration_batches` training batches (:func:`recalibrate_batchnorm`;
    0 keeps the moving averages) before the final checkpoint is written. `seed` seeds Python, NumPy and
    TensorFlow before the model is built (initial weights, shuffling, augmentation; None: unseeded): two runs
    with the same seed start alike, yet are not bit-identical (the input pipeline's parallel map and the CPU's
    float reductions run in varying order). Raises :class:`TrainingError` on a non-finite loss, leaving the
    last good checkpoint as the newest.
    """
    import numpy as np
    import tensorflow as tf
    from object_detection import inputs, model_lib_v2
    from object_detection.builders import optimizer_builder
    from tqdm.auto import tqdm

    paths = Run.open(run_dir)
    check_pipeline(paths.pipeline, where=str(paths.pipeline_config))
    configs = paths.configs()
    model_config, train_config = configs["model"], configs["train_config"]
    train_input_config = configs["train_input_config"]
    total_steps = int(num_steps or train_config.num_steps)
    checkpoint_every = checkpoint_every or max(steps_per_iteration, min(1000, total_steps // 5 or 1))
    if checkpoint_every % steps_per_iteration:
        checkpoint_every += steps_per_iteration - checkpoint_every % steps_per_iteration

    if seed is not None:
        tf.keras.utils.set_random_seed(seed)
    distribution = make_strategy(strategy)
    started = time.monotonic()
    with distribution.scope():
        model = model_lib_v2.MODEL_BUILD_UTIL_MAP["detection_model_fn_base"](
            model_config=model_config, is_training=True, add_summaries=False)

        def dataset_fn(input_context):
            return inputs.train_input(train_config=train_config, train_input_config=train_input_config,
                                      model_config=model_config, model=model,
                                      input_context=input_context).repeat()

        dataset = distribution.distribute_datasets_from_function(dataset_fn)
        global_step = tf.Variable(0, trainable=False, dtype=tf.int64, name="global_step",
                                  aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        optimizer, (learning_rate,) = optimizer_builder.build(train_config.optimizer, global_step=global_step)
        learning_rate_fn = learning_rate if callable(learning_rate) else (lambda: learning_rate)

    paths.checkpoints.mkdir(parents=True, exist_ok=True)
    writer = tf.summary.create_file_writer(str(paths.run_dir / "tensorboard" / "train"))
    with writer.as_default(), distribution.scope(), _leaves_training_mode():
        ckpt = tf.train.Checkpoint(step=global_step, model=model, optimizer=optimizer)
        manager = tf.train.CheckpointManager(ckpt, str(paths.checkpoints), max_to_keep=max_to_keep)
        resume_from = manager.latest_checkpoint
        if resume_from:
            ckpt.restore(resume_from)
            logger.info("resuming from %s (step %d)", resume_from, int(global_step.numpy()))
        elif train_config.fine_tune_checkpoint:
            logger.info("fine-tuning from %s as %r", train_config.fine_tune_checkpoint,
                        train_config.fine_tune_checkpoint_type)
            # A "full" checkpoint holds the model's reference to its run's step counter (set by the first
            # training step's provide_groundtruth); set it now, so that the old count is restored here, where it is
            # reset below, instead of lazily inside this run's first step.
            model._training_step = global_step
            model_lib_v2.load_fine_tune_checkpoint(
                model, train_config.fine_tune_checkpoint, train_config.fine_tune_checkpoint_type,
                train_config.fine_tune_checkpoint_version, True, dataset, train_config.unpad_groundtruth_tensors)
            if int(global_step.numpy()):
                logger.info("the fine-tuning checkpoint was at step %d; this run counts from 0",
                            int(global_step.numpy()))
                global_step.assign(0)
        else:
            logger.info("training from scratch (no fine_tune_checkpoint in the pipeline config)")

        clip = train_config.gradient_clipping_by_norm or None

        def step_fn(features, labels):
            losses = model_lib_v2.eager_train_step(
                model, features, labels, train_config.unpad_groundtruth_tensors, optimizer,
                training_step=global_step, add_regularization_loss=train_config.add_regularization_loss,
                clip_gradients_value=clip, num_replicas=distribution.num_replicas_in_sync)
            global_step.assign_add(1)
            return losses

        def sample_and_train(iterator):
            features, labels = next(iterator)
            per_replica = distribution.run(step_fn, args=(features, labels))
            return model_lib_v2.reduce_dict(distribution, per_replica, tf.distribute.ReduceOp.SUM)

        @tf.function
        def train_steps(iterator, count):
            for _ in tf.range(count - 1):
                with tf.name_scope(""):
                    sample_and_train(iterator)
            return sample_and_train(iterator)

        iterator = iter(dataset)
        start_step = int(global_step.numpy())
        if start_step == 0 and not resume_from:
            manager.save(checkpoint_number=0)
        first_loss = last_loss = None
        rates = []
        last_saved = start_step
        bar = tqdm(total=total_steps, initial=start_step, unit="step", desc="train", disable=not progress,
                   dynamic_ncols=True)
        with open(paths.train_log, "a", encoding="utf-8") as log:
            step = start_step
            while step < total_steps:
                count = min(steps_per_iteration, total_steps - step)
                tick = time.monotonic()
                losses = train_steps(iterator, tf.constant(count))
                values = {k: float(v.numpy()) for k, v in losses.items()}
                step = int(global_step.numpy())
                loss = values["Loss/total_loss"]
                if not math.isfinite(loss):
                    bar.close()
                    raise TrainingError(
                        f"loss became {loss} at step {step}; training stopped and the last good checkpoint "
                        f"({manager.latest_checkpoint}) was kept. Lower the learning rate "
                        "(--set train_config.optimizer.momentum_optimizer.learning_rate."
                        "cosine_decay_learning_rate.learning_rate_base=...), raise the batch size, or check the "
                        "data with `maskdetect data inspect`.")
                elapsed = time.monotonic() - tick
                rate = count / elapsed if elapsed > 0 else float("nan")
                if step > start_step + count:  # the first iteration includes tracing
                    rates.append(rate)
                first_loss = loss if first_loss is None else first_loss
                last_loss = loss
                lr = float(np.asarray(learning_rate_fn()))
                for key, value in values.items():
                    tf.summary.scalar(key, value, step=step)
                tf.summary.scalar("learning_rate", lr, step=step)
                tf.summary.scalar("steps_per_sec", rate, step=step)
                log.write(json.dumps({"step": step, **values, "learning_rate": lr, "steps_per_sec": rate,
                                      "time": time.time()}) + "\n")
                log.flush()
                bar.update(count)
                bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2g}")
                if step - last_saved >= checkpoint_every and step < total_steps:
                    manager.save(checkpoint_number=step)
                    last_saved = step
        bar.close()
        recalibrated = 0
        if step > start_step:
            if recalibration_batches:
                recalibration_data = inputs.train_input(train_config=train_config,
                                                        train_input_config=train_input_config,
                                                        model_config=model_config, model=model).repeat()
                recalibrated = recalibrate_batchnorm(model, recalibration_data, recalibration_batches,
                                                     progress=progress)
            manager.save(checkpoint_number=step)
        writer.flush()
    result = TrainResult(start_step=start_step, final_step=int(global_step.numpy()), first_loss=first_loss,
                         last_loss=last_loss, steps_per_sec=float(np.median(rates)) if rates else None,
                         seconds=time.monotonic() - started, checkpoint=manager.latest_checkpoint,
                         batchnorm_recalibrated=recalibrated)
    logger.info("trained %s", json.dumps(asdict(result)))
    return result

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
import statistics
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


def check_train_options(*, num_steps: int | None = None, steps_per_iteration: int = 10,
                        checkpoint_every: int | None = None, max_to_keep: int = 5,
                        recalibration_batches: int = 50) -> None:
    """Check :func:`train`'s numbers before anything is built or read.

    Raises:
        ConfigError: naming the option, the value and what is allowed.
    """
    for option, value, minimum in (("--steps", num_steps, 1), ("--steps-per-iteration", steps_per_iteration, 1),
                                   ("--checkpoint-every", checkpoint_every, 1), ("--max-to-keep", max_to_keep, 1),
                                   ("--recalibration-batches", recalibration_batches, 0)):
        if value is None and option in ("--steps", "--checkpoint-every"):
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(f"{option} {value!r}: expected a whole number of at least {minimum}.")


@dataclass
class _Trainer:
    """What the build step makes: the model, its input, optimizer and step counter, under one strategy."""

    run: Run
    distribution: object
    model: object
    dataset: object
    optimizer: object
    global_step: object
    learning_rate: object

    @property
    def train_config(self):
        return self.run.pipeline.train_config

    def step(self) -> int:
        return int(self.global_step.numpy())

    def current_learning_rate(self) -> float:
        import numpy as np

        rate = self.learning_rate() if callable(self.learning_rate) else self.learning_rate
        return float(np.asarray(rate))

    def input_data(self, input_context=None):
        """The training batches (augmented, shuffled, repeated), as the OD API's ``train_input`` makes them."""
        from object_detection import inputs

        configs = self.run.configs()
        return inputs.train_input(train_config=configs["train_config"],
                                  train_input_config=configs["train_input_config"], model_config=configs["model"],
                                  model=self.model, input_context=input_context).repeat()


def build_trainer(run: Run, strategy: str = "default", seed: int | None = 0) -> _Trainer:
    """Build step: seed, strategy, the detection model (training mode), its distributed input and optimizer."""
    import tensorflow as tf
    from object_detection import model_lib_v2
    from object_detection.builders import optimizer_builder

    if seed is not None:
        tf.keras.utils.set_random_seed(seed)
    distribution = make_strategy(strategy)
    with distribution.scope():
        model = model_lib_v2.MODEL_BUILD_UTIL_MAP["detection_model_fn_base"](
            model_config=run.configs()["model"], is_training=True, add_summaries=False)
        trainer = _Trainer(run, distribution, model, None, None, None, None)
        trainer.dataset = distribution.distribute_datasets_from_function(trainer.input_data)
        trainer.global_step = tf.Variable(0, trainable=False, dtype=tf.int64, name="global_step",
                                          aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        trainer.optimizer, (trainer.learning_rate,) = optimizer_builder.build(
            run.pipeline.train_config.optimizer, global_step=trainer.global_step)
    return trainer


def restore(trainer: _Trainer, manager) -> str | None:
    """Restore step: the run's newest checkpoint (resume; returned), else the config's ``fine_tune_checkpoint``
    through the OD API's own ``load_fine_tune_checkpoint`` (detection, classification or full), else nothing."""
    from object_detection import model_lib_v2

    train_config = trainer.train_config
    if manager.latest_checkpoint:
        manager.checkpoint.restore(manager.latest_checkpoint)
        logger.info("resuming from %s (step %d)", manager.latest_checkpoint, trainer.step())
        return manager.latest_checkpoint
    if not train_config.fine_tune_checkpoint:
        logger.info("training from scratch (no fine_tune_checkpoint in the pipeline config)")
        return None
    logger.info("fine-tuning from %s as %r", train_config.fine_tune_checkpoint, train_config.fine_tune_checkpoint_type)
    # A "full" checkpoint holds the model's reference to its run's step counter (set by the first training step's
    # provide_groundtruth); set it now, so that the old count is restored here, where it is reset below, instead
    # of lazily inside this run's first step.
    trainer.model._training_step = trainer.global_step
    model_lib_v2.load_fine_tune_checkpoint(
        trainer.model, train_config.fine_tune_checkpoint, train_config.fine_tune_checkpoint_type,
        train_config.fine_tune_checkpoint_version, True, trainer.dataset, train_config.unpad_groundtruth_tensors)
    if trainer.step():
        logger.info("the fine-tuning checkpoint was at step %d; this run counts from 0", trainer.step())
        trainer.global_step.assign(0)
    return None


def compiled_steps(trainer: _Trainer):
    """``steps(iterator, count)``: `count` training steps in one compiled call; returns the last step's losses."""
    import tensorflow as tf
    from object_detection import model_lib_v2

    model, distribution, train_config = trainer.model, trainer.distribution, trainer.train_config
    clip = train_config.gradient_clipping_by_norm or None

    def step_fn(features, labels):
        losses = model_lib_v2.eager_train_step(
            model, features, labels, train_config.unpad_groundtruth_tensors, trainer.optimizer,
            training_step=trainer.global_step, add_regularization_loss=train_config.add_regularization_loss,
            clip_gradients_value=clip, num_replicas=distribution.num_replicas_in_sync)
        trainer.global_step.assign_add(1)
        return losses

    def sample_and_train(iterator):
        features, labels = next(iterator)
        per_replica = distribution.run(step_fn, args=(features, labels))
        return model_lib_v2.reduce_dict(distribution, per_replica, tf.distribute.ReduceOp.SUM)

    @tf.function
    def steps(iterator, count):
        for _ in tf.range(count - 1):
            with tf.name_scope(""):
                sample_and_train(iterator)
        return sample_and_train(iterator)

    return steps


class StepLog:
    """Step-log step: each iteration's losses, learning rate and speed to ``train_log.jsonl`` (appended),
    TensorBoard and the progress bar; the losses and speeds kept for the result."""

    def __init__(self, run: Run, total_steps: int, start_step: int, *, progress: bool = True) -> None:
        import tensorflow as tf
        from tqdm.auto import tqdm

        self.writer = tf.summary.create_file_writer(str(run.tensorboard_train))
        self.log = open(run.train_log, "a", encoding="utf-8")
        self.bar = tqdm(total=total_steps, initial=start_step, unit="step", desc="train", disable=not progress,
                        dynamic_ncols=True)
        self.first_loss = self.last_loss = None
        self.rates: list[float] = []  # steps/s after the first iteration (which includes tracing)
        self.iterations = 0

    def __enter__(self) -> "StepLog":
        self._default_writer = self.writer.as_default()  # the OD API's train step writes its summaries there too
        self._default_writer.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()
        self.log.close()
        self._default_writer.__exit__(*exc)
        self.writer.flush()

    def record(self, step: int, count: int, values: dict[str, float], learning_rate: float, seconds: float) -> None:
        import tensorflow as tf

        rate = count / seconds if seconds > 0 else float("nan")
        self.iterations += 1
        if self.iterations > 1:
            self.rates.append(rate)
        loss = values["Loss/total_loss"]
        self.first_loss = loss if self.first_loss is None else self.first_loss
        self.last_loss = loss
        for key, value in {**values, "learning_rate": learning_rate, "steps_per_sec": rate}.items():
            tf.summary.scalar(key, value, step=step)
        self.log.write(json.dumps({"step": step, **values, "learning_rate": learning_rate, "steps_per_sec": rate,
                                   "time": time.time()}) + "\n")
        self.log.flush()
        self.bar.update(count)
        self.bar.set_postfix(loss=f"{loss:.3f}", lr=f"{learning_rate:.2g}")


def check_finite(values: dict[str, float], step: int, manager) -> None:
    """The NaN guard: stop on a non-finite loss, the last good checkpoint kept as the newest."""
    loss = values["Loss/total_loss"]
    if not math.isfinite(loss):
        raise TrainingError(
            f"loss became {loss} at step {step}; training stopped and the last good checkpoint "
            f"({manager.latest_checkpoint}) was kept. Lower the learning rate "
            "(--set train_config.optimizer.momentum_optimizer.learning_rate."
            "cosine_decay_learning_rate.learning_rate_base=...), raise the batch size, or check the "
            "data with `maskdetect data inspect`.")


def finish(trainer: _Trainer, manager, recalibration_batches: int, *, progress: bool = True) -> int:
    """Finish step: recompute the BatchNorm statistics (:func:`recalibrate_batchnorm`) and save the final
    checkpoint; returns the number of batches the statistics were averaged over."""
    recalibrated = 0
    if recalibration_batches:
        recalibrated = recalibrate_batchnorm(trainer.model, trainer.input_data(), recalibration_batches,
                                             progress=progress)
    manager.save(checkpoint_number=trainer.step())
    return recalibrated


def train(run_dir: Run | str | Path, *, num_steps: int | None = None, strategy: str = "default",
          steps_per_iteration: int = 10, checkpoint_every: int | None = None, max_to_keep: int = 5,
          recalibration_batches: int = 50, seed: int | None = 0, progress: bool = True) -> TrainResult:
    """Train the run in `run_dir` (made by :func:`maskdetect.train.pipeline.configure`) up to `num_steps`, in
    named steps: build, restore (the run's newest checkpoint, else its ``fine_tune_checkpoint``, else scratch),
    steps logged (:class:`StepLog`) with checkpoints every `checkpoint_every` steps, finish (BatchNorm statistics
    recomputed over `recalibration_batches` batches, 0 keeps the moving averages; final checkpoint). `seed` seeds
    Python, NumPy and TensorFlow (None: unseeded); runs alike in seed still differ in float order.

    Raises:
        ConfigError: a bad option, before anything is built; TrainingError: a non-finite loss (the last good
            checkpoint stays the newest).
    """
    check_train_options(num_steps=num_steps, steps_per_iteration=steps_per_iteration,
                        checkpoint_every=checkpoint_every, max_to_keep=max_to_keep,
                        recalibration_batches=recalibration_batches)
    import tensorflow as tf
    from object_detection import model_lib_v2  # noqa: F401  (first: without the OD API nothing below runs)

    run = Run.open(run_dir)
    check_pipeline(run.pipeline, where=str(run.pipeline_config))
    total_steps = int(num_steps or run.pipeline.train_config.num_steps)
    every = checkpoint_every or max(steps_per_iteration, min(1000, total_steps // 5 or 1))
    every += -every % steps_per_iteration  # checkpoints fall on iteration boundaries
    started = time.monotonic()
    trainer = build_trainer(run, strategy, seed)
    run.checkpoints.mkdir(parents=True, exist_ok=True)
    with trainer.distribution.scope(), _leaves_training_mode():
        checkpoint = tf.train.Checkpoint(step=trainer.global_step, model=trainer.model, optimizer=trainer.optimizer)
        manager = tf.train.CheckpointManager(checkpoint, str(run.checkpoints), max_to_keep=max_to_keep)
        resumed = restore(trainer, manager)
        step = last_saved = start_step = trainer.step()
        if start_step == 0 and not resumed:
            manager.save(checkpoint_number=0)
        steps, iterator, recalibrated = compiled_steps(trainer), iter(trainer.dataset), 0
        with StepLog(run, total_steps, start_step, progress=progress) as log:
            while step < total_steps:
                count, tick = min(steps_per_iteration, total_steps - step), time.monotonic()
                values = {k: float(v.numpy()) for k, v in steps(iterator, tf.constant(count)).items()}
                step = trainer.step()
                check_finite(values, step, manager)
                log.record(step, count, values, trainer.current_learning_rate(), time.monotonic() - tick)
                if step - last_saved >= every and step < total_steps:
                    manager.save(checkpoint_number=step)
                    last_saved = step
        if step > start_step:
            recalibrated = finish(trainer, manager, recalibration_batches, progress=progress)
    result = TrainResult(start_step=start_step, final_step=trainer.step(), first_loss=log.first_loss,
                         last_loss=log.last_loss, steps_per_sec=statistics.median(log.rates) if log.rates else None,
                         seconds=time.monotonic() - started, checkpoint=manager.latest_checkpoint,
                         batchnorm_recalibrated=recalibrated)
    logger.info("trained %s", json.dumps(asdict(result)))
    return result

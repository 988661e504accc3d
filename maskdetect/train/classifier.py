"""Train the second-stage face classifier (:mod:`maskdetect.infer.classify`) on a run's training faces, and export
it beside the run's exports: ``export/classifier.tflite`` and ``export/classifier.json`` (crop size, margin,
classes, training settings, accuracy on the val faces).

The crops are the ground-truth faces of the run's ``train`` records, each cut ``jitter`` times with its box
shifted and scaled a little (as a detector's boxes are), flipped and re-lit at random while training; classes are
weighted by the inverse square root of their frequency (the rare ``mask_weared_incorrect`` counts more). Several
classifiers trained with different seeds can be exported as one that averages them (``members``).

Example:
    >>> train_classifier("workspace/runs/masks", members=3)  # doctest: +SKIP
    PosixPath('workspace/runs/masks/export/classifier.tflite')
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Iterable

import numpy as np

from maskdetect.errors import ConfigError, DataError
from maskdetect.fileio import atomic_path
from maskdetect.infer.bundle import classifier_path, write_classifier_spec
from maskdetect.infer.classify import face_crops
from maskdetect.train.run import Run

logger = logging.getLogger(__name__)

DEFAULT_INPUT_SIZE = 48
DEFAULT_MARGIN = 1.4
DEFAULT_EPOCHS = 10
DEFAULT_JITTER = 4
WIDTHS = (16, 32, 64, 128)  # two 3x3 convs per width, then a 2x2 max-pool: about 30 M multiply-adds at 48 px


def jittered_boxes(xyxy: np.ndarray, copies: int, rng: np.random.Generator) -> np.ndarray:
    """Each box, then ``copies - 1`` versions of it moved (sd 8% of its size) and scaled (sd 12%, log-normal)."""
    boxes = np.asarray(xyxy, np.float32).reshape(-1, 4)
    out = [boxes]
    for _ in range(copies - 1):
        size = boxes[:, 2:] - boxes[:, :2]
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2 + rng.normal(0, 0.08, size.shape) * size
        half = size * np.exp(rng.normal(0, 0.12, (len(boxes), 1))) / 2
        out.append(np.concatenate([centre - half, centre + half], axis=1).astype(np.float32))
    return np.stack(out, axis=1).reshape(-1, 4)  # box-major: each box's copies side by side


def face_dataset(files: Iterable[str], *, input_size: int, margin: float, copies: int = 1,
                 rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(crops uint8 (N, S, S, 3), classes (N,))`` of every ground-truth face in the records."""
    from maskdetect.train.evaluate import iter_examples

    files = list(files)
    rng = rng or np.random.default_rng(0)
    crops, classes = [], []
    for _, image, truth in iter_examples(files):
        crops.append(face_crops(image, jittered_boxes(truth.xyxy, copies, rng), input_size, margin))
        classes.append(np.repeat(truth.class_id, copies))
    if not crops or not sum(len(c) for c in classes):
        raise DataError(f"{files}: no faces to train the classifier on")
    return np.concatenate(crops), np.concatenate(classes)


def build_model(input_size: int, num_classes: int):
    """The crop classifier: float32 RGB in [0, 255] -> class probabilities."""
    import tensorflow as tf

    layers = tf.keras.layers
    inputs = layers.Input((input_size, input_size, 3), dtype="float32")
    x = layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    for width in WIDTHS:
        for _ in range(2):
            x = layers.Conv2D(width, 3, padding="same", use_bias=False)(x)
            x = layers.BatchNormalization()(x)
            x = layers.ReLU()(x)
        x = layers.MaxPool2D()(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.3)(x)
    return tf.keras.Model(inputs, layers.Dense(num_classes, activation="softmax")(x))


def per_class_accuracy(probabilities: np.ndarray, classes: np.ndarray, class_names: list[str]) -> dict:
    predicted = probabilities.argmax(axis=1)
    return {name: (round(float((predicted[classes == i] == i).mean()), 4) if (classes == i).any() else None)
            for i, name in enumerate(class_names)}


def train_classifier(run_dir: Run | str | Path, *, input_size: int = DEFAULT_INPUT_SIZE,
                     margin: float = DEFAULT_MARGIN, epochs: int = DEFAULT_EPOCHS, jitter: int = DEFAULT_JITTER,
                     batch_size: int = 64, learning_rate: float = 2e-3, seed: int = 0, members: int = 1,
                     progress: bool = True) -> Path:
    """Train the crop classifier on the run's train faces (scored on its val faces, if any) and write
    ``export/classifier.tflite`` and ``export/classifier.json``; return the ``.tflite`` path.

    ``members > 1`` trains that many classifiers, with seeds ``seed, seed + 1, ...`` (each its own jittered crops,
    initial weights and batch order), and exports their averaged probabilities as one model: an ensemble, steadier
    than any one member on the rare class, at ``members`` times the training time and the per-face cost."""
    import tensorflow as tf
    from tqdm.auto import tqdm

    from maskdetect.train.export import library_versions

    for name, value, lowest in (("epochs", epochs, 1), ("jitter", jitter, 1), ("input_size", input_size, 16),
                                ("batch_size", batch_size, 1), ("members", members, 1)):
        if int(value) != value or value < lowest:
            raise ConfigError(f"classifier {name}={value}: must be a whole number >= {lowest}")
    if not margin >= 1.0:
        raise ConfigError(f"classifier margin={margin}: must be >= 1 (the crop's side over the box's longer side)")
    run = Run.open(run_dir)
    class_names = run.class_names
    started = time.monotonic()
    train_files = run.record_files("train")
    try:
        val_crops, val_classes = face_dataset(run.record_files("val"), input_size=input_size, margin=margin)
    except DataError:
        val_crops, val_classes = None, None
    seeds = [seed + i for i in range(members)]

    def member_crops(member_seed: int) -> tuple[np.ndarray, np.ndarray]:  # every member: the same faces, its jitter
        return face_dataset(train_files, input_size=input_size, margin=margin, copies=jitter,
                            rng=np.random.default_rng(member_seed))

    crops, classes = member_crops(seed)
    counts = np.bincount(classes, minlength=len(class_names))
    weights = {i: float(np.sqrt(len(classes) / (len(class_names) * n))) for i, n in enumerate(counts) if n}
    steps = epochs * int(np.ceil(len(classes) / batch_size))
    logger.info("classifier: %d training crops (%s), %s val faces, %d member(s)", len(classes),
                ", ".join(f"{n} {name}" for name, n in zip(class_names, counts)),
                len(val_classes) if val_classes is not None else "no", members)
    models, losses = [], []
    bar = tqdm(total=steps * members, desc="classifier", unit="step", disable=not progress)
    try:
        for index, member_seed in enumerate(seeds):
            if index:  # the first member's crops are read above
                crops, classes = member_crops(member_seed)
            if members > 1:
                bar.set_description(f"classifier {index + 1}/{members}")
            model, loss = _fit_member(crops, classes, weights, input_size=input_size, num_classes=len(class_names),
                                      steps=steps, epochs=epochs, batch_size=batch_size,
                                      learning_rate=learning_rate, seed=member_seed, bar=bar)
            models.append(model)
            losses.append(loss)
    finally:
        bar.close()
    model = models[0] if members == 1 else average_models(models, input_size)
    accuracy = None
    if val_crops is not None:
        accuracy = per_class_accuracy(model.predict(val_crops.astype(np.float32), verbose=0), val_classes, class_names)

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    path = classifier_path(run.exports)
    run.exports.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_bytes(converter.convert())
    architecture = (f"{len(WIDTHS)} blocks of two 3x3 conv+BN+ReLU ({', '.join(map(str, WIDTHS))} channels), "
                    "max-pool, global average, dropout 0.3, softmax")
    write_classifier_spec(path, {
        "input_size": input_size, "margin": margin, "classes": class_names,
        "architecture": architecture if members == 1 else f"the average of {members} classifiers, each {architecture}",
        "members": members,
        "training": {"records": train_files, "faces": {n: int(c // jitter) for n, c in zip(class_names, counts)},
                     "jitter_copies": jitter, "epochs": epochs, "batch_size": batch_size,
                     "learning_rate": learning_rate, "class_weights": {class_names[i]: round(w, 3)
                                                                        for i, w in weights.items()},
                     "seeds": seeds, "final_loss": [round(loss, 4) for loss in losses]},
        "val_face_accuracy": accuracy,
        "val_faces": ({n: int((val_classes == i).sum()) for i, n in enumerate(class_names)}
                      if val_classes is not None else None),
        "seconds": round(time.monotonic() - started, 1),
        "versions": library_versions(),
    })
    logger.info("classifier written: %s (val face accuracy %s)", path, accuracy)
    return path


def _fit_member(crops: np.ndarray, classes: np.ndarray, weights: dict, *, input_size: int, num_classes: int,
                steps: int, epochs: int, batch_size: int, learning_rate: float, seed: int,
                bar) -> tuple[object, float]:
    """One classifier trained on `crops` for `epochs` (`steps` batches; flipped and re-lit at random); returns
    ``(model, final loss)``."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    layers = tf.keras.layers
    augment = tf.keras.Sequential([layers.RandomFlip("horizontal", seed=seed),
                                   layers.RandomBrightness(0.2, value_range=(0, 255), seed=seed),
                                   layers.RandomContrast(0.2, seed=seed)])
    dataset = (tf.data.Dataset.from_tensor_slices((crops, classes)).shuffle(len(classes), seed=seed)
               .batch(batch_size).map(lambda x, y: (augment(tf.cast(x, tf.float32), training=True), y))
               .prefetch(2))
    model = build_model(input_size, num_classes)
    model.compile(tf.keras.optimizers.Adam(tf.keras.optimizers.schedules.CosineDecay(learning_rate, steps)),
                  "sparse_categorical_crossentropy", metrics=["accuracy"])

    class Progress(tf.keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            bar.update(1)
            bar.set_postfix(loss=f"{(logs or {}).get('loss', float('nan')):.3f}", refresh=False)

    history = model.fit(dataset, epochs=epochs, class_weight=weights, verbose=0, callbacks=[Progress()])
    return model, float(history.history["loss"][-1])


def average_models(models: list, input_size: int):
    """One model whose output is the mean of `models`' class probabilities."""
    import tensorflow as tf

    inputs = tf.keras.layers.Input((input_size, input_size, 3), dtype="float32")
    return tf.keras.Model(inputs, tf.keras.layers.Average()([model(inputs) for model in models]))


__all__ = ["train_classifier", "build_model", "average_models", "face_dataset", "jittered_boxes"]

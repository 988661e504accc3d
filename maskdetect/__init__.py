"""maskdetect: face-mask detection on the TensorFlow 2 Object Detection API.

Importing this package makes the OD API importable on current TensorFlow (see :mod:`maskdetect.compat`);
it does not import TensorFlow itself.
"""

from maskdetect import compat as _compat

_compat.install()

__version__ = "0.1.0"
CLASSES = ("with_mask", "without_mask", "mask_weared_incorrect")

"""Datasets: read VOC/KITTI/COCO/YOLO/TFRecord, write OD API TFRecords, inspect them, download from Roboflow.

Public API (the CLI ``maskdetect data ...`` is a thin face over these):

* :func:`convert` -> :class:`Manifest` — any supported format to ``DIR/{train,val,test}-*.tfrecord``,
  ``DIR/label_map.pbtxt`` and ``DIR/manifest.json``.
* :func:`inspect` -> ``dict`` — validate any OD API TFRecord file or folder, write ``report.json`` and PNGs.
* :func:`download_roboflow` -> ``Path`` — a Roboflow dataset version (API key from the environment or Colab).
"""

from maskdetect.data.convert import Manifest, convert
from maskdetect.data.inspect import inspect
from maskdetect.data.roboflow import download_roboflow

__all__ = ["Manifest", "convert", "inspect", "download_roboflow"]

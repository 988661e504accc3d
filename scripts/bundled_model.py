"""The bundled model's exact recipe (maskdetect/models/default, 2026-12-03), through the package's own functions.

Two runs on the Kaggle face-mask set converted as the CPU recipe converts it (``--split 0.85,0.15,0 --seed 0``):

1. ``cam-320``: SSD MobileNet V2 FPNLite at 320, batch 4, Adam 0.002 with warmup and cosine, 2,000 steps, from the
   ImageNet MobileNetV2 backbone (``--backbone-weights imagenet``), smallest anchors 16 px (``anchor_scale`` 2),
   and one augmentation added to the template's flip and mild crop: a zoom-in crop (half the images; a window of
   1-25% of the photo's area holding at least one whole face, aspect 1:2 to 2:1, then squeezed to the square), so
   that faces the size of a webcam's are seen in training;
2. ``cam-320-x2``: every weight of the first run (``full``), 600 more steps at Adam 0.0005 with a stronger zoom
   (0.3-10% of the area: faces up to the whole frame).

Then, as the README's lines: ``export cam-320-x2 --quantize int8 --image-size 384``, the second stage copied from
the previous bundled model (``classifier --members 3`` on the same training split, so it never saw a val face),
``evaluate --export ... --classifier`` (which writes the operating point on the card), and ``letterbox_wider_than``
1.5 in the export's ``tflite_input.json``. Measured: docs/experiments.md, "Camera distance".

usage: python scripts/bundled_model.py DATA_DIR WORKSPACE_RUNS_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

from maskdetect.train.pipeline import configure
from maskdetect.train.run import load_pipeline, save_pipeline
from maskdetect.train.train import train

ANCHORS = "model.ssd.anchor_generator.multiscale_anchor_generator.anchor_scale=2"


def add_zoom_crop(run, min_area: float, max_area: float) -> None:
    """One more ``random_crop_image`` in the run's pipeline.config: a whole face in a window of `min_area` to
    `max_area` of the photo, for half the images."""
    pipeline = load_pipeline(run.pipeline_config)
    crop = pipeline.train_config.data_augmentation_options.add().random_crop_image
    crop.min_object_covered, crop.min_aspect_ratio, crop.max_aspect_ratio = 1.0, 0.5, 2.0
    crop.min_area, crop.max_area, crop.overlap_thresh, crop.clip_boxes, crop.random_coef = (
        min_area, max_area, 0.5, True, 0.5)
    save_pipeline(pipeline, run.pipeline_config)


def main(data: str, runs: str) -> None:
    first = configure(data, Path(runs) / "cam-320", "ssd_mobilenet_v2_fpnlite_320", image_size=320, batch_size=4,
                      num_steps=2000, optimizer="adam", backbone_weights="imagenet", overrides=[ANCHORS])
    add_zoom_crop(first, 0.01, 0.25)
    train(first, steps_per_iteration=25)
    second = configure(data, Path(runs) / "cam-320-x2", "ssd_mobilenet_v2_fpnlite_320", image_size=320,
                       batch_size=4, num_steps=600, optimizer="adam", learning_rate=0.0005,
                       checkpoint=first.checkpoints / "ckpt-2000",
                       overrides=[ANCHORS, "train_config.fine_tune_checkpoint_type=full"])
    add_zoom_crop(second, 0.003, 0.1)
    train(second, steps_per_iteration=25)


if __name__ == "__main__":
    main(*sys.argv[1:3])

"""How long to train: steps that follow the data's size, and the time they are expected to take.

A fixed step count fits one data set only: the README's Colab recipe (6,000 steps of batch 16) is about 165
passes over the Kaggle set's ~580 training photos, but 3,800 over the sample's 25. :func:`plan_training` keeps
the passes (epochs) and derives the steps, within bounds, and estimates the time from figures measured here.

Example:
    >>> plan = plan_training(580, batch_size=16)
    >>> plan.steps, plan.epochs
    (5982, 165.0)
    >>> plan_training(25, batch_size=16).steps
    258
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Passes over the training images: the Colab recipe's 6,000 steps x 16 over the Kaggle set's ~580 training photos.
DEFAULT_EPOCHS = 165
MIN_STEPS = 200
MAX_STEPS = 6000
#: Seconds per training image (one image of one step) at 512 px, measured on a 2-core CPU (README "Speed", bench/
#: bench_training.py, 2026-11-22): D0 1.83 s/step at batch 2; MobileNet V2 FPNLite 0.76 s/step at batch 4 at 320 px.
CPU_S_PER_IMAGE_512 = {"ssd_efficientdet_d0_512": 0.92, "efficientdet_d1_640": 1.6,
                       "ssd_mobilenet_v2_fpnlite_320": 0.49, "ssd_mobilenet_v2_fpnlite_640": 0.49}
#: A T4's time per image is at most this fraction of the 2-core CPU's (zoo: D0 39 ms/image on a V100, a T4 about
#: half a V100; training about 7x inference here): an upper bound, not a measurement (no GPU on this machine).
T4_FRACTION_OF_CPU_AT_MOST = 0.58


@dataclass(frozen=True)
class TrainingPlan:
    """Steps for a data set, and their expected time."""

    steps: int
    epochs: float
    train_images: int
    batch_size: int
    seconds: float
    upper_bound: bool  # True: the time is an upper bound (GPU), not a figure measured on such a machine

    def describe(self) -> str:
        """One line for a notebook or a log."""
        hours = self.seconds / 3600
        when = f"{hours:.1f} h" if hours >= 1 else f"{max(1, round(self.seconds / 60))} min"
        how = (f"at most about {when} on a T4 GPU (an upper bound from CPU figures; the progress bar's ETA after a "
               "few minutes gives the real one)") if self.upper_bound else f"about {when} on a 2-core CPU"
        return (f"{self.steps} steps of batch {self.batch_size} = {self.epochs:g} passes over {self.train_images} "
                f"training images; expected time: {how}")


def plan_training(train_images: int, *, batch_size: int, model: str = "ssd_efficientdet_d0_512",
                  image_size: int | None = None, gpu: bool = True, epochs: float = DEFAULT_EPOCHS,
                  min_steps: int = MIN_STEPS, max_steps: int = MAX_STEPS) -> TrainingPlan:
    """Steps for `epochs` passes over `train_images` at `batch_size` (clipped to ``[min_steps, max_steps]``),
    and their expected time on a T4 (`gpu`) or a 2-core CPU.

    Raises:
        ValueError: no training images, or a batch size below 1.
    """
    if train_images < 1 or batch_size < 1:
        raise ValueError(f"need training images and a batch size >= 1 (got {train_images} images, batch {batch_size})")
    steps = min(max_steps, max(min_steps, math.ceil(epochs * train_images / batch_size)))
    suffix = model.rsplit("_", 1)[-1]
    size = image_size or (int(suffix) if suffix.isdigit() else 512)
    per_image = CPU_S_PER_IMAGE_512.get(model, CPU_S_PER_IMAGE_512["ssd_efficientdet_d0_512"]) * (size / 512) ** 2
    seconds = steps * batch_size * per_image * (T4_FRACTION_OF_CPU_AT_MOST if gpu else 1.0)
    return TrainingPlan(steps=steps, epochs=round(steps * batch_size / train_images, 1), train_images=train_images,
                        batch_size=batch_size, seconds=seconds, upper_bound=gpu)


__all__ = ["TrainingPlan", "plan_training"]

"""A run directory, known in one place: what made it and what it made.

:class:`Run` owns ``workspace/runs/<name>/``: the as-run ``pipeline.config`` (parsed once, on first use), the label
map, the data manifest, ``train_log.jsonl``, ``checkpoints/``, ``tensorboard/``, ``metrics-<split>.json``,
``plots/``, ``backbone.json`` (where pretrained backbone weights came from) and ``export/`` (``saved_model/``,
``model.tflite``, their label map and model card).
:func:`~maskdetect.train.pipeline.configure` makes one; ``train``, ``evaluate``, ``export`` take one (or its
path); a :class:`~maskdetect.infer.predictor.Predictor` takes one too (``os.fspath(run)`` is the directory, and
the predictor finds ``export/`` in it).

Example:
    >>> run = Run("workspace/runs/demo")                                             # doctest: +SKIP
    >>> run.class_names, run.latest_checkpoint(), run.saved_model                   # doctest: +SKIP
"""

from __future__ import annotations

import copy
import json
from functools import cached_property
from pathlib import Path
from typing import Any

from maskdetect.errors import ConfigError, DataError
from maskdetect.fileio import atomic_path
from maskdetect.infer.bundle import export_folder, load_pipeline, saved_model_dir, tflite_model_path
from maskdetect.infer.bundle import pipeline_input_size as image_size_of


def split_files(data_dir: Path, split: str) -> list[Path]:
    """The TFRecord shards of `split` in a folder made by ``maskdetect data convert``."""
    return sorted(data_dir.glob(f"{split}-*.tfrecord")) or sorted(data_dir.glob(f"{split}*.tfrecord"))


def save_pipeline(pipeline, path: str | Path) -> Path:
    from google.protobuf import text_format

    with atomic_path(path) as tmp:
        tmp.write_text(text_format.MessageToString(pipeline), encoding="utf-8")
    return Path(path)


class Run:
    """One run directory, and the one place that names its files.

    Args:
        run_dir: the directory (resolved to an absolute path).

    Attributes:
        run_dir: the directory.
    """

    #: What a run holds, as made by configure, train, evaluate and export (``metrics-*.json`` besides): moved
    #: together into ``superseded/<time>/`` when a trained run is configured again with ``force``.
    FILES = ("pipeline.config", "label_map.pbtxt", "data_manifest.json", "backbone.json", "checkpoints",
             "train_log.jsonl", "tensorboard", "plots", export_folder(Path()).name)
    SUPERSEDED = "superseded"

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir).resolve()

    @classmethod
    def open(cls, run: "Run | str | Path") -> "Run":
        """`run` itself, or the run in that directory; `ConfigError` if it holds no ``pipeline.config``."""
        run = run if isinstance(run, Run) else cls(run)
        if not run.pipeline_config.is_file():
            raise ConfigError(f"{run.run_dir}: no pipeline.config, so not a run directory; make one with "
                              "`maskdetect configure --data DATA --out RUN_DIR`")
        return run

    def __fspath__(self) -> str:
        return str(self.run_dir)

    def __repr__(self) -> str:
        return f"Run({str(self.run_dir)!r})"

    # -- files --------------------------------------------------------------------------------------------------
    @property
    def pipeline_config(self) -> Path:
        return self.run_dir / "pipeline.config"

    @property
    def label_map(self) -> Path:
        return self.run_dir / "label_map.pbtxt"

    @property
    def data_manifest(self) -> Path:
        return self.run_dir / "data_manifest.json"

    @property
    def checkpoints(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def backbone(self) -> Path:
        """``backbone.json``: the provenance of pretrained backbone weights (source, path, sha256, detail,
        layers_restored), copied onto the model card at export; absent when the run starts otherwise."""
        return self.run_dir / "backbone.json"

    @property
    def train_log(self) -> Path:
        return self.run_dir / "train_log.jsonl"

    @property
    def tensorboard(self) -> Path:
        return self.run_dir / "tensorboard"

    @property
    def tensorboard_train(self) -> Path:
        """Where ``train`` writes its TensorBoard scalars."""
        return self.tensorboard / "train"

    @property
    def plots(self) -> Path:
        return self.run_dir / "plots"

    @property
    def exports(self) -> Path:
        return export_folder(self.run_dir)

    export_dir = exports  # the name the export bundle uses

    def contents(self) -> list[Path]:
        """What the run holds of :attr:`FILES` and its ``metrics-*.json`` (what ``--force`` supersedes)."""
        if not self.run_dir.is_dir():
            return []
        return sorted(p for p in self.run_dir.iterdir() if p.name in self.FILES or p.name.startswith("metrics-"))

    def is_run(self) -> bool:
        """Whether configure made this folder: it holds the ``pipeline.config`` and data manifest configure
        writes (a model-zoo folder has a pipeline.config too, but no data manifest)."""
        return self.pipeline_config.is_file() and self.data_manifest.is_file()

    @property
    def saved_model(self) -> Path:
        return saved_model_dir(self.exports)

    @property
    def tflite(self) -> Path:
        return tflite_model_path(self.exports)

    def tflite_path(self, quantize: str = "none") -> Path:
        """``model.tflite`` (float32), ``model-fp16.tflite`` or ``model-int8.tflite``."""
        return tflite_model_path(self.exports, quantize)

    def metrics_path(self, tag: str) -> Path:
        """``metrics-<tag>.json`` (tag: the split, ``-export`` appended for the exported model)."""
        return self.run_dir / f"metrics-{tag}.json"

    # -- contents -----------------------------------------------------------------------------------------------
    @cached_property
    def pipeline(self):
        """The as-run ``TrainEvalPipelineConfig`` (parsed once; take :meth:`configs` to change a copy)."""
        return load_pipeline(self.pipeline_config)

    @property
    def input_size(self) -> int:
        """The input size the run trains at."""
        return image_size_of(self.pipeline)

    def configs(self) -> dict[str, Any]:
        """The OD API's config dict (``model``, ``train_config``, ``train_input_config``, ...) of a copy of
        :attr:`pipeline`, as ``config_util.get_configs_from_pipeline_file`` would give it."""
        from object_detection.utils import config_util

        return config_util.create_configs_from_pipeline_proto(copy.deepcopy(self.pipeline))

    @cached_property
    def class_names(self) -> list[str]:
        from maskdetect.labelmap import read_label_map

        return read_label_map(self.label_map)

    def data_info(self) -> dict[str, Any]:
        """The data manifest ``configure`` wrote (data folder, TFRecord files, classes), or {}."""
        if not self.data_manifest.exists():
            return {}
        return json.loads(self.data_manifest.read_text(encoding="utf-8"))

    def record_files(self, split: str) -> list[str]:
        """The TFRecord files of `split` (train, val, test) in the run's data folder; without a data manifest,
        the pipeline's own readers: the train input reader's for ``train``, the eval input reader's otherwise."""
        data = self.data_info()
        if data.get("data_dir"):
            files = split_files(Path(data["data_dir"]), split)
            if files:
                return [str(f) for f in files]
            raise DataError(f"{data['data_dir']}: no {split}-*.tfrecord files; choose another --split (train, val, "
                            "test)")
        reader = self.pipeline.train_input_reader if split == "train" else self.pipeline.eval_input_reader[0]
        return list(reader.tf_record_input_reader.input_path)

    def metrics(self) -> dict[str, dict[str, Any]]:
        """Every ``metrics-*.json`` of the run, by file stem."""
        return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(self.run_dir.glob("metrics-*.json"))}

    def latest_checkpoint(self) -> str | None:
        """The newest checkpoint prefix (``.../checkpoints/ckpt-N``), or None before training."""
        import tensorflow as tf

        return tf.train.latest_checkpoint(str(self.checkpoints))

    def require_checkpoint(self) -> str:
        """:meth:`latest_checkpoint`, or `ConfigError` telling to train first."""
        checkpoint = self.latest_checkpoint()
        if not checkpoint:
            raise ConfigError(f"{self.run_dir}: no checkpoint in {self.checkpoints}; run `maskdetect train` first")
        return checkpoint


__all__ = ["Run", "load_pipeline", "save_pipeline", "split_files", "image_size_of"]

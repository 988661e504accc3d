"""Typed errors. Each message names the file or value at fault and what to do about it."""


class MaskdetectError(Exception):
    """Base of every error maskdetect raises on purpose (the CLI prints these without a traceback)."""


class DataError(MaskdetectError):
    """Input data (images, annotations, TFRecords, label maps) is missing or malformed."""


class ConfigError(MaskdetectError):
    """A pipeline config, an override or an option is invalid."""


class DownloadError(MaskdetectError):
    """A download failed, was refused, or is impossible offline."""


class TrainingError(MaskdetectError):
    """Training stopped (non-finite loss, missing checkpoint, ...)."""


class VideoError(MaskdetectError):
    """A video could not be read or written (ffmpeg's own message is included)."""


class OutputError(ConfigError):
    """An output would destroy an input, or replace a file or folder maskdetect did not make."""


class ModelPathError(ConfigError):
    """A model path (``--model``, ``Predictor(path)``, ``evaluate --export PATH``) names no single model.

    Four cases, each its own subclass with its own fix: :class:`ModelNotFoundError`, :class:`EmptyModelFolderError`,
    :class:`RunNotExportedError`, :class:`AmbiguousModelFolderError`."""


class ModelNotFoundError(ModelPathError):
    """The model path does not exist."""


class EmptyModelFolderError(ModelPathError):
    """The folder holds no model (no SavedModel, ``.tflite`` or ``.onnx`` file)."""


class RunNotExportedError(ModelPathError):
    """A run folder whose ``export/`` holds no model yet."""


class AmbiguousModelFolderError(ModelPathError):
    """The folder holds two or more model files: which one is meant is not ours to guess."""

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

"""What a TFLite export carries about itself: its class names and input spec, as JSON in the model file's own
``metadata`` list (the flatbuffer field the TFLite schema has for this), so a ``model.tflite`` copied alone still
runs as exported. Read and written with the schema LiteRT ships (``ai_edge_litert.schema_py_generated``): no
TensorFlow, as the light install has none."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping

from maskdetect.errors import ConfigError

METADATA_NAME = "maskdetect"  # the entry's name in the model's metadata list (the converter's own entries stay)
METADATA_KEYS = ("classes", "input")
FILE_IDENTIFIER = b"TFL3"


def _rewritten(model: bytes, edit: Callable[[Any], None]) -> bytes:
    """`model` (a ``.tflite`` flatbuffer) unpacked, changed by `edit` (given the schema's ``ModelT``), packed again;
    every part `edit` leaves alone is kept, so the model computes the same."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    tree = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    tree.metadata = tree.metadata or []
    edit(tree)
    builder = flatbuffers.Builder(len(model) + 4096)
    builder.Finish(tree.Pack(builder), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())


def embed(model: bytes, values: Mapping[str, Any]) -> bytes:
    """`model` (a ``.tflite`` flatbuffer) with `values` as JSON under :data:`METADATA_NAME` (an earlier entry of
    that name is replaced); every other part of the model is kept, so it computes the same."""
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema

    data = np.frombuffer(json.dumps(dict(values), sort_keys=True).encode("utf-8"), np.uint8)

    def put(tree) -> None:
        earlier = [entry for entry in tree.metadata if entry.name == METADATA_NAME.encode()]  # names unpack as bytes
        if earlier:  # its buffer is rewritten in place
            tree.buffers[earlier[0].buffer].data = data
        else:
            buffer = schema.BufferT()
            buffer.data = data
            tree.buffers.append(buffer)
            entry = schema.MetadataT()
            entry.name, entry.buffer = METADATA_NAME, len(tree.buffers) - 1
            tree.metadata.append(entry)

    return _rewritten(model, put)


def remove(model: bytes) -> bytes:
    """`model` without the :data:`METADATA_NAME` entry (the converter's own entries and every weight kept): a model
    as exported before the entry existed, or by another tool."""
    def drop(tree) -> None:
        tree.metadata = [entry for entry in tree.metadata if entry.name != METADATA_NAME.encode()]

    return _rewritten(model, drop)


def read(path: str | os.PathLike) -> dict[str, Any] | None:
    """The values :func:`embed` stored in the model at `path` (None for a model without them, e.g. one exported
    before they were written or by another tool, and for a file that is no TFLite model at all, which the
    interpreter then refuses by name).

    Raises:
        ConfigError: an entry that is not the JSON object :func:`embed` writes.
    """
    from ai_edge_litert import schema_py_generated as schema

    path = Path(path)
    data = path.read_bytes()
    if len(data) < 8 or not schema.Model.ModelBufferHasIdentifier(data, 0):
        return None
    model = schema.Model.GetRootAs(data, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() == METADATA_NAME.encode():
            raw = model.Buffers(entry.Buffer()).DataAsNumpy()
            try:
                values = json.loads(bytes(raw).decode("utf-8"))
                missing = [key for key in METADATA_KEYS if key not in values]
                if missing:
                    raise ValueError(f"no {', '.join(missing)}")
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"{path}: malformed {METADATA_NAME} metadata ({exc}); export the model "
                                  "again") from exc
            return values
    return None


__all__ = ["METADATA_KEYS", "METADATA_NAME", "embed", "read", "remove"]

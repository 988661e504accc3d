"""Inline display for Jupyter and Colab: pictures, videos, tables. The notebooks call these; nothing else does.

The ``show_*`` functions display and return None (so a cell ending with one shows it once); a headless run
finds what they showed in the cell outputs (HTML images, embedded MP4, tables).

Example:
    >>> from maskdetect import notebook
    >>> notebook.show_images(["plots/val/pr_curves.png", "plots/val/confusion_matrix.png"])  # doctest: +SKIP
    >>> notebook.show_video("workspace/runs/demo/annotated_sample.mp4")                       # doctest: +SKIP
"""

from __future__ import annotations

import base64
import html
import io
import mimetypes
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np


def _display(obj: Any) -> None:
    from IPython.display import display

    display(obj)


def _image_src(image: str | Path | np.ndarray) -> str:
    """A data URL of an image file or of an RGB uint8 array (encoded as JPEG)."""
    if isinstance(image, np.ndarray):
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=85)
        data, mime = buffer.getvalue(), "image/jpeg"
    else:
        path = Path(image)
        data, mime = path.read_bytes(), mimetypes.guess_type(path.name)[0] or "image/png"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def show_image(image: str | Path | np.ndarray, *, width: int | None = None) -> None:
    """Show one image file (PNG/JPEG) or RGB uint8 array inline."""
    from IPython.display import HTML

    style = f' style="max-width:{int(width)}px"' if width else ' style="max-width:100%"'
    _display(HTML(f'<img src="{_image_src(image)}"{style}/>'))


def show_images(images: Sequence[str | Path | np.ndarray], *, titles: Sequence[str] | None = None,
                columns: int = 3, width: int = 320) -> None:
    """Show images side by side in a grid, each with an optional title (default: the file name)."""
    from IPython.display import HTML

    cells = []
    for index, image in enumerate(images):
        title = titles[index] if titles else (Path(image).name if not isinstance(image, np.ndarray) else "")
        cells.append(f'<figure style="margin:4px;display:inline-block;vertical-align:top;width:{int(width)}px">'
                     f'<img src="{_image_src(image)}" style="width:100%"/>'
                     f'<figcaption style="font-size:small">{html.escape(str(title))}</figcaption></figure>')
    rows = ["".join(cells[i:i + columns]) for i in range(0, len(cells), columns)]
    _display(HTML("<div>" + "<br/>".join(rows) + "</div>"))


def show_video(path: str | Path, *, width: int = 640) -> None:
    """Embed an H.264 MP4 (what :mod:`maskdetect.infer.video` writes) so it plays inline, also in a saved notebook."""
    from IPython.display import Video

    _display(Video(str(path), embed=True, mimetype="video/mp4", width=width,
                          html_attributes="controls loop muted playsinline"))


def show_table(rows: Iterable[Mapping[str, Any]] | Mapping[str, Mapping[str, Any]], *, index: str | None = None,
               digits: int = 3) -> None:
    """Show a table: a list of row dicts, or ``{row name: {column: value}}`` (`index` names the row column).

    Floats are rounded to `digits`; a missing value is an empty cell. Plain HTML, so no table library is needed.
    """
    if isinstance(rows, Mapping):
        records = [{index or "": name, **dict(row)} for name, row in rows.items()]
    else:
        records = [dict(row) for row in rows]
    columns: list[str] = []
    for record in records:  # every key, in first-seen order
        columns += [column for column in record if column not in columns]
    if index in columns:
        columns.remove(index)
        columns.insert(0, index)

    def text(value: Any) -> str:
        return "" if value is None else str(round(value, digits) if isinstance(value, float) else value)

    table = [[text(record.get(column)) for column in columns] for record in records]
    head = "".join(f"<th>{html.escape(str(column))}</th>" for column in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(value)}</td>" for value in row) + "</tr>" for row in table)
    plain = "\n".join("  ".join(map(str, row)) for row in [columns, *table])
    _display(_Table(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>", plain))


class _Table:
    """A table shown as HTML in Jupyter, as plain text elsewhere (consoles, a saved notebook's text)."""

    def __init__(self, markup: str, plain: str) -> None:
        self._markup, self._plain = markup, plain

    def _repr_html_(self) -> str:
        return self._markup

    def __repr__(self) -> str:
        return self._plain


def ap_table(metrics: Mapping[str, Any]) -> None:
    """Per-class AP@0.5 and ground-truth counts of :func:`maskdetect.train.evaluate.evaluate`, with the mean."""
    counts = metrics.get("num_groundtruth", {})
    rows = [{"class": name, "AP@0.5": ap, "boxes": counts.get(name)} for name, ap in metrics["AP@0.5"].items()]
    rows.append({"class": "mean (mAP@0.5)", "AP@0.5": metrics.get("mAP@0.5"), "boxes": sum(counts.values())})
    show_table(rows, index="class")


def data_table(report_or_counts: Mapping[str, Any]) -> None:
    """Images and boxes per split and class: of :func:`maskdetect.data.inspect`'s report, or of the ``counts`` of
    :func:`maskdetect.data.convert`'s manifest."""
    splits = report_or_counts.get("splits", report_or_counts)
    rows = {split: {"images": entry["images"], "boxes": entry["boxes"], **entry.get("classes", {})}
            for split, entry in splits.items()}
    show_table(rows, index="split")


def split_images(run_dir: str | Path, splits: str | Sequence[str] = ("test", "val"), *, limit: int = 6) -> list:
    """Up to `limit` RGB images of the first of `splits` that the run's data has (from its TFRecords).

    The run's ``data_manifest.json`` names the data folder (:func:`maskdetect.train.pipeline.configure` writes it).

    Raises:
        DataError: none of `splits` has a TFRecord file.
    """
    from PIL import Image

    from maskdetect.data.tfrecord import iter_records, parse_example
    from maskdetect.errors import DataError
    from maskdetect.train.run import split_files
    from maskdetect.train.run import Run

    manifest = Run(run_dir).data_info()
    data_dir = Path(manifest["data_dir"])
    for split in [splits] if isinstance(splits, str) else splits:
        files = split_files(data_dir, split)
        if not files:
            continue
        images = []
        for file in files:
            for record in iter_records(file):
                with Image.open(io.BytesIO(parse_example(record)["encoded"])) as image:
                    images.append(np.asarray(image.convert("RGB")))
                if len(images) == limit:
                    return images
        return images
    raise DataError(f"{data_dir}: no TFRecords for {', '.join([splits] if isinstance(splits, str) else splits)}")

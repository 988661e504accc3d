"""Helpers shared by the data and download tests: a loopback HTTP server with Range support, tiny datasets."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import re
import threading
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample" / "face-mask"


class FileServer:
    """Serves ``files`` (url path -> bytes) on 127.0.0.1 with ``Range``/``If-Range``, ETags and fault injection.

    ``cut_after``: close the connection after this many body bytes of the *next* full-body response (once).
    ``ignore_range``: answer every request with 200 and the whole body.
    """

    def __init__(self, files: dict[str, bytes]):
        self.files = dict(files)
        self.cut_after: int | None = None
        self.ignore_range = False
        self.requests: list[dict] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                path = self.path.split("?", 1)[0]
                server.requests.append({"path": self.path, "headers": dict(self.headers)})
                body = server.files.get(path)
                if body is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
                start = 0
                rng = self.headers.get("Range")
                if_range = self.headers.get("If-Range")
                if rng and not server.ignore_range and (if_range is None or if_range == etag):
                    m = re.fullmatch(r"bytes=(\d+)-", rng.strip())
                    start = int(m.group(1)) if m else 0
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                chunk = body[start:]
                self.send_header("Content-Length", str(len(chunk)))
                self.send_header("ETag", etag)
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if server.cut_after is not None:
                    cut, server.cut_after = server.cut_after, None
                    self.wfile.write(chunk[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(chunk)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@contextlib.contextmanager
def serve(files: dict[str, bytes]) -> Iterator[FileServer]:
    server = FileServer(files)
    thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
        thread.join(5)


# --------------------------------------------------------------------------- small datasets built from sample/
def voc_boxes(xml: Path) -> tuple[str, int, int, list[tuple[str, float, float, float, float]]]:
    """``(image filename, width, height, [(name, x1, y1, x2, y2), ...])`` of a VOC file."""
    import xml.etree.ElementTree as ET

    root = ET.parse(xml).getroot()
    boxes = [(o.findtext("name"), *(float(o.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")))
             for o in root.iter("object")]
    return root.findtext("filename"), int(root.findtext("size/width")), int(root.findtext("size/height")), boxes


def copy_voc(dst: Path, stems: list[str]) -> Path:
    """A VOC dataset (annotations/ + images/) with the given sample stems."""
    import shutil

    (dst / "annotations").mkdir(parents=True)
    (dst / "images").mkdir()
    for stem in stems:
        shutil.copy(SAMPLE / "annotations" / f"{stem}.xml", dst / "annotations")
        shutil.copy(SAMPLE / "images" / f"{stem}.jpg", dst / "images")
    return dst


def write_voc_xml(path: Path, filename: str, wh: tuple[int, int], boxes) -> None:
    objects = "".join(
        f"<object><name>{n}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax><ymax>{d}</ymax>"
        f"</bndbox></object>" for n, a, b, c, d in boxes)
    path.write_text(f"<annotation><filename>{filename}</filename><size><width>{wh[0]}</width>"
                    f"<height>{wh[1]}</height><depth>3</depth></size>{objects}</annotation>")


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def voc_to_kitti(voc: Path, dst: Path) -> Path:
    import shutil

    (dst / "label_2").mkdir(parents=True)
    (dst / "image_2").mkdir()
    for xml in sorted((voc / "annotations").glob("*.xml")):
        filename, _, _, boxes = voc_boxes(xml)
        shutil.copy(voc / "images" / filename, dst / "image_2" / filename)
        lines = [f"{n} 0.00 0 0.00 {_num(a)} {_num(b)} {_num(c)} {_num(d)} 0 0 0 0 0 0 0" for n, a, b, c, d in boxes]
        (dst / "label_2" / f"{xml.stem}.txt").write_text("\n".join(lines) + "\n")
    return dst


def voc_to_coco(voc: Path, dst: Path, classes=("with_mask", "without_mask", "mask_weared_incorrect")) -> Path:
    import json
    import shutil

    (dst / "images").mkdir(parents=True)
    images, annotations = [], []
    for i, xml in enumerate(sorted((voc / "annotations").glob("*.xml"))):
        filename, w, h, boxes = voc_boxes(xml)
        shutil.copy(voc / "images" / filename, dst / "images" / filename)
        images.append({"id": i + 10, "file_name": filename, "width": w, "height": h})
        for n, a, b, c, d in boxes:
            annotations.append({"id": len(annotations) + 1, "image_id": i + 10, "category_id": classes.index(n) + 1,
                                "bbox": [a, b, c - a, d - b], "area": (c - a) * (d - b), "iscrowd": 0})
    cats = [{"id": k + 1, "name": n, "supercategory": "face"} for k, n in enumerate(classes)]
    (dst / "annotations.json").write_text(json.dumps({"images": images, "annotations": annotations,
                                                      "categories": cats}))
    return dst


def voc_to_yolo(voc: Path, dst: Path, classes=("with_mask", "without_mask", "mask_weared_incorrect"),
                rename: dict[str, str] | None = None) -> Path:
    """The VOC folder as YOLO labels; `rename` gives VOC class names their name in `classes`; boxes of classes
    not in `classes` are dropped."""
    import shutil

    rename = rename or {}
    (dst / "images").mkdir(parents=True)
    (dst / "labels").mkdir()
    (dst / "classes.txt").write_text("\n".join(classes) + "\n")
    for xml in sorted((voc / "annotations").glob("*.xml")):
        filename, w, h, boxes = voc_boxes(xml)
        shutil.copy(voc / "images" / filename, dst / "images" / filename)
        lines = [f"{classes.index(rename.get(n, n))} {repr((a + c) / 2 / w)} {repr((b + d) / 2 / h)} "
                 f"{repr((c - a) / w)} {repr((d - b) / h)}" for n, a, b, c, d in boxes if rename.get(n, n) in classes]
        (dst / "labels" / f"{Path(filename).stem}.txt").write_text("\n".join(lines) + "\n")
    return dst


def read_records(folder: Path, pattern: str = "*.tfrecord") -> list[bytes]:
    import tensorflow as tf

    files = sorted(str(p) for p in Path(folder).glob(pattern))
    return [r.numpy() for r in tf.data.TFRecordDataset(files)] if files else []


def parse(record: bytes) -> dict:
    """Decode with plain ``tf.io.parse_single_example`` (an independent reader, not ours)."""
    import tensorflow as tf

    spec = {k: tf.io.VarLenFeature(tf.float32) for k in
            ("image/object/bbox/xmin", "image/object/bbox/xmax", "image/object/bbox/ymin", "image/object/bbox/ymax")}
    spec.update({
        "image/encoded": tf.io.FixedLenFeature([], tf.string), "image/format": tf.io.FixedLenFeature([], tf.string),
        "image/height": tf.io.FixedLenFeature([], tf.int64), "image/width": tf.io.FixedLenFeature([], tf.int64),
        "image/filename": tf.io.FixedLenFeature([], tf.string),
        "image/source_id": tf.io.FixedLenFeature([], tf.string),
        "image/object/class/text": tf.io.VarLenFeature(tf.string),
        "image/object/class/label": tf.io.VarLenFeature(tf.int64)})
    ex = tf.io.parse_single_example(record, spec)
    out = {k: (tf.sparse.to_dense(v).numpy() if isinstance(v, tf.SparseTensor) else v.numpy()) for k, v in ex.items()}
    image = tf.io.decode_jpeg(out["image/encoded"]).numpy()
    out["image"] = image
    return out


def roboflow_export_of_the_sample(tmp_path: Path) -> bytes:
    """The bundled sample as a Roboflow TFRecord export (train/valid/test) whose classes are named like a
    Roboflow data set's (``Mask``, ``No_Mask``, ``Incorrect_Mask``), zipped."""
    import io
    import zipfile

    from maskdetect.data import convert

    theirs = {"with_mask": "Mask", "without_mask": "No_Mask", "mask_weared_incorrect": "Incorrect_Mask"}
    folder = tmp_path / "theirs"
    convert("voc", SAMPLE, folder, split=(0.7, 0.15, 0.15), class_map=theirs, seed=0)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for ours, split in (("train", "train"), ("val", "valid"), ("test", "test")):
            for k, shard in enumerate(sorted(folder.glob(f"{ours}-*.tfrecord"))):
                archive.write(shard, f"{split}/masks-{k}.tfrecord")
            archive.write(folder / "label_map.pbtxt", f"{split}/masks_label_map.pbtxt")
    return buffer.getvalue()

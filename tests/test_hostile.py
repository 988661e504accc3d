"""The hostile corpus (issue 24): the real CLI run the way a careless or hostile user runs it.

Every table case runs ``maskdetect.cli.main`` in-process (the real parser, guard, readers and writers; no
model training) in a fresh folder and asserts that:

* every input file hashes the same afterwards (nothing the user had is lost or changed);
* no planted secret appears in stdout, stderr, the log records or any file under the test folder;
* the exit status is the expected one, and a failure is exactly one ``maskdetect ...: error: ...`` line
  matching the expected message, with no traceback.

Cases that belong to mechanisms other helpers are closing this round are ``xfail(strict=True)`` with the
mechanism number: they fail today, and an XPASS (the fix landed) turns the suite red until the mark is removed.
Beside the table: a walk over every numeric option of every command (mechanism 8), signals and a full disk
during ``data convert`` (fresh processes), and the EXIF rule of mechanism 10 checked against OpenCV.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from data_fixtures import serve
from children import default_signals
from maskdetect.cli import build_parser, main
from maskdetect.cli.options import Number

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "maskdetect" / "models" / "default"

# planted secrets: none of them may appear anywhere we write or print
PASSWORD = "Hunter2pwQ"
QPASS = "p?ss#w0rdQ"
LOGINPAS = "LoginPasValue7"
APIKEY = "ApiKeyValue8x"
CODE = "CodeValue99zz"
PATHTOKEN = "Tok3nInPathAbCdEf12"
SECRETS = [PASSWORD, QPASS, LOGINPAS, APIKEY, CODE, PATHTOKEN, "pw0rdSmtpQ"]
ERROR_LINE = re.compile(r"^maskdetect( [a-z]+){1,2}: error: ")


# --------------------------------------------------------------------------- the world a case runs in
def jpeg_bytes(width: int = 64, height: int = 48, orientation: int | None = None, seed: int = 0) -> bytes:
    """A small noisy RGB JPEG (optionally with an EXIF orientation tag)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
    out = io.BytesIO()
    if orientation is None:
        image.save(out, format="JPEG", quality=90)
    else:
        exif = image.getexif()
        exif[0x0112] = orientation
        image.save(out, format="JPEG", quality=90, exif=exif.tobytes())
    return out.getvalue()


def voc_xml(filename: str, wh: tuple[int, int] | None, boxes: list[tuple[str, int, int, int, int]]) -> str:
    size = f"<size><width>{wh[0]}</width><height>{wh[1]}</height><depth>3</depth></size>" if wh else ""
    objects = "".join(f"<object><name>{n}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax>"
                      f"<ymax>{d}</ymax></bndbox></object>" for n, a, b, c, d in boxes)
    return f"<annotation><filename>{filename}</filename>{size}{objects}</annotation>"


class World:
    """A test folder: inputs under ``in/`` (hashed before and after), everything else is output space.
    Resources are made on first use."""

    def __init__(self, root: Path, server=None) -> None:
        self.root, self.server = root, server
        self.inp = root / "in"
        self.inp.mkdir()
        self.extra_inputs: list[Path] = []

    def p(self, rel: str) -> str:
        return str(self.root / rel)

    @property
    def ds(self) -> Path:
        """``in/ds``: a VOC dataset of 3 tiny images."""
        ds = self.inp / "ds"
        if not ds.exists():
            (ds / "annotations").mkdir(parents=True)
            (ds / "images").mkdir()
            for i in range(3):
                (ds / "images" / f"f{i}.jpg").write_bytes(jpeg_bytes(seed=i))
                (ds / "annotations" / f"f{i}.xml").write_text(voc_xml(
                    f"f{i}.jpg", (64, 48), [("with_mask", 4, 4, 30, 30), ("without_mask", 32, 10, 60, 44)]))
        return ds

    @property
    def img(self) -> Path:
        path = self.inp / "img.jpg"
        if not path.exists():
            path.write_bytes(jpeg_bytes(96, 72, seed=7))
        return path

    @property
    def clip(self) -> Path:
        path = self.inp / "clip.mp4"
        if not path.exists():
            from clips import make_test_clip

            make_test_clip(path, size_wh=(64, 48), fps="10", frames=3, audio=False)
        return path

    @property
    def model(self) -> Path:
        """A private copy of the bundled model (its sidecars are inputs too)."""
        folder = self.inp / "model"
        if not folder.exists():
            shutil.copytree(BUNDLED, folder)
        return folder / "model-int8.tflite"

    def link(self, rel: str, target: str) -> str:
        (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, self.root / rel)
        return self.p(rel)

    def url(self, path: str) -> str:
        return self.server.url(path)


def tree_digest(root: Path) -> dict[str, str]:
    """``{relative path: sha256 or link target}`` of everything under `root`."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = "-> " + os.readlink(path)
        elif path.is_file():
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def files_with_secrets(root: Path) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            hits += [f"{path.relative_to(root)}: {s}" for s in SECRETS if s.encode() in data]
    return hits


# --------------------------------------------------------------------------- archives served on loopback
def zip_of(members: dict[str, bytes], *, links: dict[str, str] | None = None) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, body in members.items():
            zf.writestr(name, body)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16)
            zf.writestr(info, target)
    return out.getvalue()


def bomb_zip() -> bytes:
    """40 MiB of zeros in a ~40 KB zip."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        with zf.open("train/zeros.bin", "w") as f:
            block = bytes(1 << 20)
            for _ in range(40):
                f.write(block)
    return out.getvalue()


def tgz_of(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tf:
        for name, body in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tf.addfile(info, io.BytesIO(body))
    return out.getvalue()


SERVED = {
    "/bomb.zip": bomb_zip(),
    "/escape.zip": zip_of({"train/a.tfrecord": b"x", "../evil.txt": b"owned"}),
    "/absolute.zip": zip_of({"/tmp/evil-maskdetect.txt": b"owned"}),
    "/link.zip": zip_of({"train/a.tfrecord": b"x"}, links={"train/l": "/etc/passwd"}),
    "/notzip.zip": b"this is not an archive at all" * 10,
    f"/ds/{PATHTOKEN}/export.zip": b"",  # an empty body: not a zip
}
_ZOO_NAME = "efficientdet_d0_coco17_tpu-32"
SERVED[f"/zoo/{_ZOO_NAME}.tar.gz"] = tgz_of({
    f"{_ZOO_NAME}/checkpoint/ckpt-0.index": b"i", f"{_ZOO_NAME}/checkpoint/ckpt-0.data-00000-of-00001": b"d",
    f"{_ZOO_NAME}/pipeline.config": b"",
    "ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8/checkpoint/ckpt-0.index": b"EVIL"})


# --------------------------------------------------------------------------- the table
@dataclass
class Case:
    id: str
    mechanism: int
    argv: Callable[[World], list[str]]
    rc: int
    message: str | None = None  # regex the one error line must match (None: success, no error line)
    env: dict[str, str] = field(default_factory=dict)
    check: Callable[[World, str], None] | None = None  # more checks on the world and stdout
    xfail: str | None = None


def convert(w: World, out: str, *extra: str, fmt: str = "voc", source: str | None = None) -> list[str]:
    return ["data", "convert", "--format", fmt, "--source", source or str(w.ds), "--out", out, "--split", "1,0,0",
            *extra]


CASES: list[Case] = []


def case(*args, **kwargs) -> None:
    CASES.append(Case(*args, **kwargs))


# -- mechanism 1: the path guard resolves as the kernel does ---------------------------------------------------
case("convert-out-dotdot-text", 1, lambda w: convert(w, w.p("in/ds/../ds")), 2, r"is the input --source")
case("convert-out-link-dotdot", 1,
     lambda w: convert(w, w.link("lnk", str(w.ds / "annotations")) + "/../../ds"), 2, r"input --source")
case("convert-out-link-dotdot-into-source", 1,
     lambda w: convert(w, w.link("lnk", str(w.ds / "annotations")) + "/../new"), 2, r"lies inside the input")
case("convert-out-under-symlinked-parent", 1, lambda w: convert(w, w.link("dl", str(w.ds)) + "/out"), 2,
     r"lies inside the input")
case("convert-out-link-chain", 1,
     lambda w: (w.link("c2", str(w.ds)), convert(w, w.link("c1", w.p("c2")) + "/x"))[1], 2, r"lies inside the input")
case("convert-out-link-chain-dotdot", 1,
     lambda w: (w.link("c2", str(w.ds / "images")), convert(w, w.link("c1", w.p("c2")) + "/../annotations"))[1], 2,
     r"(lies inside|is) the input")
case("convert-out-link-loop", 1, lambda w: convert(w, w.link("loop", w.p("loop")) + "/x"), 2,
     r"symbolic link loop")
case("convert-out-link-loop-pair", 1,
     lambda w: (w.link("la", w.p("lb")), w.link("lb", w.p("la")), convert(w, w.p("la/x")))[2], 2,
     r"symbolic link loop")
case("convert-source-link-loop", 1, lambda w: convert(w, w.p("out"), source=w.link("sl", w.p("sl"))), 2,
     r"symbolic link loop")
case("convert-out-holds-source", 1, lambda w: convert(w, str(w.inp)), 2, r"holds the input")
case("convert-out-is-link-to-source", 1, lambda w: convert(w, w.link("same", str(w.ds))), 2, r"is the input")
case("convert-source-via-link-out-real", 1,
     lambda w: convert(w, str(w.ds / "out"), source=w.link("src", str(w.ds))), 2, r"lies inside the input")
case("convert-out-dangling-link-into-source", 1,
     lambda w: convert(w, w.link("dang", str(w.ds / "new-folder"))), 2, r"lies inside the input")
case("inspect-out-dotdot", 1,
     lambda w: ["data", "inspect", str(w.ds), "--out", w.link("il", str(w.ds / "images")) + "/../rep"], 2,
     r"lies inside the input")
case("inspect-out-loop", 1, lambda w: ["data", "inspect", str(w.ds), "--out", w.link("il", w.p("il")) + "/r"],
     2, r"symbolic link loop")
case("predict-out-link-dotdot-is-source", 1,
     lambda w: (w.img, (w.inp / "b" / "c").mkdir(parents=True),
                ["predict", "--model", str(w.model), "--source", str(w.img),
                 "--out", w.link("plnk", str(w.inp / "b" / "c")) + "/../../img.jpg"])[2], 2, r"is the input --source")
case("predict-json-link-dotdot-is-model", 1,
     lambda w: ["predict", "--model", str(w.model), "--source", str(w.img),
                "--json", w.link("mlnk", str(w.model.parent)) + "/../model/model-int8.tflite"], 2,
     r"is the input --model")
case("predict-out-hard-link-of-source", 1,
     lambda w: (os.link(w.img, w.root / "hard.jpg"),
                ["predict", "--model", str(w.model), "--source", str(w.img), "--out", w.p("hard.jpg")])[1], 2,
     r"hard link")
case("predict-json-loop", 1,
     lambda w: ["predict", "--model", str(w.model), "--source", str(w.img), "--json",
                w.link("jl", w.p("jl")) + "/d.json"], 2, r"symbolic link loop")
case("predict-out-inside-model-folder-via-link", 1,
     lambda w: ["predict", "--model", str(w.model.parent), "--source", str(w.img), "--out",
                w.link("ml", str(w.model.parent / "label_map.pbtxt")) + ""], 2, r"input --model")

case("convert-out-is-coco-json-source", 1,
     lambda w: convert(w, coco_source(w, [{"id": 1, "file_name": "a.jpg"}], CATS, []) + "/annotations.json",
                       fmt="coco", source=str(w.inp / "coco" / "annotations.json")), 2, r"is the input")
case("convert-out-foreign-folder", 1,
     lambda w: ((w.root / "mine").mkdir(), (w.root / "mine" / "notes.txt").write_text("mine"),
                w.extra_inputs.append(w.root / "mine" / "notes.txt"), convert(w, w.p("mine")))[3], 2,
     r"not made by `maskdetect data convert`")
case("convert-out-existing-file", 1,
     lambda w: ((w.root / "file.txt").write_text("mine"), w.extra_inputs.append(w.root / "file.txt"),
                convert(w, w.p("file.txt")))[2], 2, r"exists and is not a folder")
case("inspect-out-foreign-folder", 1,
     lambda w: ((w.root / "rep").mkdir(), (w.root / "rep" / "keep.txt").write_text("mine"),
                w.extra_inputs.append(w.root / "rep" / "keep.txt"),
                ["data", "inspect", str(w.ds), "--out", w.p("rep")])[3], 2, r"not made by `maskdetect data inspect`")
case("predict-out-and-json-same-file-via-link", 1,
     lambda w: ["predict", "--model", str(w.model), "--source", str(w.img), "--out", w.p("o.jpg"),
                "--json", w.link("ol", w.p(".")) + "/o.jpg"], 2, r"same file")
case("predict-folder-out-inside-source-via-dotdot", 1,
     lambda w: ["predict", "--model", str(w.model), "--source", str(w.ds / "images"),
                "--out", w.link("pl", str(w.ds / "annotations")) + "/../images/annotated"], 2, r"lies inside the input")
case("predict-folder-out-holds-source", 1,
     lambda w: ["predict", "--model", str(w.model), "--source", str(w.ds / "images"), "--out", str(w.ds)], 2,
     r"holds the input")

# -- mechanism 12: a file output naming an existing folder is refused before any work ------------------------
case("predict-json-existing-folder", 12,
     lambda w: ((w.root / "jdir").mkdir(), ["predict", "--model", str(w.model), "--source", str(w.img),
                                             "--out", w.p("o.jpg"), "--json", w.p("jdir")])[1], 2,
     r"--json .*is an existing folder")
case("predict-video-out-existing-folder-gets-the-video-inside", 12,
     lambda w: ((w.root / "vdir").mkdir(), ["predict", "--model", str(w.model), "--source", str(w.clip),
                                             "--out", w.p("vdir")])[1], 0,
     check=lambda w, out: (w.root / "vdir" / "clip.mp4").is_file() or pytest.fail(out))
case("predict-events-existing-folder", 12,
     lambda w: ((w.root / "edir").mkdir(), ["predict", "--model", str(w.model), "--source", str(w.clip),
                                             "--json", w.p("o.json"), "--track", "--events", w.p("edir")])[1], 2,
     r"--events .*is an existing folder")
case("predict-max-frames-zero-blames-option", 12,
     lambda w: ["predict", "--source", str(w.clip), "--out", w.p("o.mp4"), "--max-frames", "0"], 2,
     r"--max-frames 0 is out of range")

# -- mechanism 7: secrets in messages ---------------------------------------------------------------------------
def roboflow(url: str) -> Callable[[World], list[str]]:
    return lambda w: ["data", "download", "roboflow", "--url", url.replace("{srv}", w.url("")), "--out", w.p("rf")]


for name, url, message in [
    ("key-query-404", "{srv}/missing.zip?key=" + APIKEY, r"HTTP 404"),
    ("loginpas-query", "{srv}/missing.zip?loginpas=" + LOGINPAS, r"HTTP 404"),
    ("api-key-query", "{srv}/missing.zip?api-key=" + APIKEY, r"HTTP 404"),
    ("code-query", "{srv}/missing.zip?code=" + CODE + "&fps=5", r"HTTP 404"),
    ("token-in-path", "{srv}/ds/" + PATHTOKEN + "/missing.zip", r"HTTP 404"),
    ("token-in-path-bad-zip", "{srv}/ds/" + PATHTOKEN + "/export.zip", r"not a zip|corrupt|truncated"),
    ("userinfo-404", "http://user:" + PASSWORD + "@127.0.0.1:{port}/missing.zip", r"HTTP 404"),
    ("userinfo-qmark-hash", "http://user:" + QPASS + "@127.0.0.1:{port}/missing.zip", r"percent-encode"),
    ("userinfo-at-sign", "http://user:" + PASSWORD + "@x@127.0.0.1:{port}/missing.zip", r"HTTP 404"),
    ("userinfo-slash", "http://user:" + PASSWORD + "/x@127.0.0.1:{port}/missing.zip", r"percent-encode"),
    ("userinfo-encoded-ok", "http://user:" + PASSWORD + "%3Fx@127.0.0.1:{port}/missing.zip", r"HTTP 404"),
    ("closed-port-key", "http://127.0.0.1:9/x.zip?key=" + APIKEY, r"cannot reach 127\.0\.0\.1"),
    ("closed-port-userinfo", "http://admin:" + PASSWORD + "@127.0.0.1:9/x.zip", r"cannot reach 127\.0\.0\.1"),
    ("closed-port-path-token", "http://127.0.0.1:9/ds/" + PATHTOKEN + "/x.zip?code=" + CODE, r"cannot reach"),
    ("ftp-scheme", "ftp://user:" + PASSWORD + "@files.example/x.zip?key=" + APIKEY, r"only https://"),
    ("no-host", "https:///x.zip?key=" + APIKEY, r"no host"),
    ("typo-scheme-one-slash", "https:/user:" + PASSWORD + "@files.example/x.zip", r"no host|only https"),
]:
    def _argv(w, url=url):
        return roboflow(url.replace("{port}", str(w.server.port)))(w)

    case(f"download-{name}", 7, _argv, 2, message)


def smtp_case(name: str, smtp_url: str, message: str, xfail: str | None = None) -> None:
    case(f"smtp-{name}", 7, lambda w: ["predict", "--model", str(w.model), "--source", str(w.clip), "--json",
                                       w.p("o.json"), "--alert-email", "ops@example.com"], 2, message,
         env={"MASKDETECT_SMTP_URL": smtp_url}, xfail=xfail)


smtp_case("one-slash", "smtp:/alerts:pw0rdSmtpQ@mail.example:587", r"must be smtp://")
smtp_case("no-colon", "smtp//alerts:pw0rdSmtpQ@mail.example:587", r"must be smtp://")
smtp_case("wrong-scheme", "http://alerts:pw0rdSmtpQ@mail.example:587", r"must be smtp://")
smtp_case("qmark-password", "smtpx://alerts:p?ss#w0rdQ@mail.example:587", r"must be smtp://")
smtp_case("port-not-a-number", "smtp://alerts:pw0rdSmtpQ@mail.example:abc", r"port")
case("alert-url-ftp", 7, lambda w: ["predict", "--model", str(w.model), "--source", str(w.clip), "--json",
                                    w.p("o.json"), "--alert-url", f"ftp://u:{PASSWORD}@hooks.example/{PATHTOKEN}"],
     2, r"--alert-url must be an http")
case("alert-url-typo", 7, lambda w: ["predict", "--model", str(w.model), "--source", str(w.clip), "--json",
                                     w.p("o.json"), "--alert-url", f"https//hooks.example/x?code={CODE}"],
     2, r"--alert-url must be an http")


# -- mechanism 10: silent relabelling in data conversion -------------------------------------------------------
def coco_source(w: World, images: list[dict], categories: list[dict], annotations: list[dict]) -> str:
    folder = w.inp / "coco"
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for img in images:
        (folder / "images" / img["file_name"]).write_bytes(jpeg_bytes(seed=len(img["file_name"]) + img["id"]))
    (folder / "annotations.json").write_text(json.dumps({"images": images, "categories": categories,
                                                         "annotations": annotations}))
    return str(folder)


def _coco_ann(i: int, image_id: int, cat: int) -> dict:
    return {"id": i, "image_id": image_id, "category_id": cat, "bbox": [4, 4, 20, 20], "iscrowd": 0}


CATS = [{"id": 1, "name": "with_mask"}, {"id": 2, "name": "without_mask"}]
case("coco-duplicate-image-ids", 10, lambda w: convert(w, w.p("out"), fmt="coco", source=coco_source(
    w, [{"id": 1, "file_name": "a.jpg"}, {"id": 1, "file_name": "b.jpg"}], CATS, [_coco_ann(1, 1, 1)])), 2,
     r"share the id 1")
case("coco-duplicate-category-ids", 10, lambda w: convert(w, w.p("out"), fmt="coco", source=coco_source(
    w, [{"id": 1, "file_name": "a.jpg"}], CATS + [{"id": 2, "name": "mask_weared_incorrect"}],
    [_coco_ann(1, 1, 2)])), 2, r"category id 2 is given twice")


def _check_counts(expected: dict[str, int]) -> Callable[[World, str], None]:
    def check(w: World, _out: str) -> None:
        manifest = json.loads((w.root / "out" / "manifest.json").read_text())
        assert manifest["counts"]["total"]["classes"] == expected, manifest["counts"]
    return check


case("coco-same-category-twice-same-name", 10, lambda w: convert(w, w.p("out"), fmt="coco", source=coco_source(
    w, [{"id": 1, "file_name": "a.jpg"}], CATS + [{"id": 2, "name": "without_mask"}], [_coco_ann(1, 1, 2)])), 0,
     check=_check_counts({"without_mask": 1}))


def yolo_source(w: World, names_yaml: str, labels: list[str]) -> str:
    folder = w.inp / "yolo"
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    (folder / "data.yaml").write_text(names_yaml)
    for i, line in enumerate(labels):
        (folder / "images" / f"y{i}.jpg").write_bytes(jpeg_bytes(seed=30 + i))
        (folder / "labels" / f"y{i}.txt").write_text(line + "\n")
    return str(folder)


case("yolo-gap-in-ids-keeps-classes", 10, lambda w: convert(w, w.p("out"), fmt="yolo", source=yolo_source(
    w, "names: {0: with_mask, 2: without_mask}\n", ["2 0.5 0.5 0.3 0.3", "0 0.5 0.5 0.3 0.3"])), 0,
     check=_check_counts({"with_mask": 1, "without_mask": 1}))
case("yolo-id-not-named-is-dropped", 10, lambda w: convert(w, w.p("out"), fmt="yolo", source=yolo_source(
    w, "names: {0: with_mask, 2: without_mask}\n", ["1 0.5 0.5 0.3 0.3", "0 0.5 0.5 0.3 0.3"])), 0,
     check=_check_counts({"with_mask": 1}))
case("yolo-id-not-named-strict", 10, lambda w: convert(w, w.p("out"), "--strict", fmt="yolo", source=yolo_source(
    w, "names: {0: with_mask, 2: without_mask}\n", ["1 0.5 0.5 0.3 0.3"])), 2, r"class id 1 is not one of")
case("yolo-names-bad-key", 10, lambda w: convert(w, w.p("out"), fmt="yolo", source=yolo_source(
    w, "names: {zero: with_mask}\n", ["0 0.5 0.5 0.3 0.3"])), 2, r"not a whole number")
case("map-conflict", 10, lambda w: convert(w, w.p("out"), "--map", "face=with_mask", "--map", "face=without_mask"),
     2, r"map one class to two names")
case("map-conflict-blind", 10, lambda w: convert(w, w.p("out"), "--map", "Face_Mask=with_mask", "--map",
                                                 "face-mask=without_mask"), 2, r"map one class to two names")
case("map-same-pair-twice", 10, lambda w: convert(w, w.p("out"), "--map", "with_mask=with_mask", "--map",
                                                  "with_mask=with_mask"), 0,
     check=_check_counts({"with_mask": 3, "without_mask": 3}))


def exif_voc(w: World, declared: tuple[int, int] | None, orientation: int = 6) -> str:
    folder = w.inp / "exif"
    (folder / "annotations").mkdir(parents=True)
    (folder / "images").mkdir()
    (folder / "images" / "r.jpg").write_bytes(jpeg_bytes(64, 48, orientation=orientation))
    (folder / "annotations" / "r.xml").write_text(voc_xml("r.jpg", declared, [("with_mask", 2, 2, 20, 30)]))
    return str(folder)


def _check_exif_warning(w: World, _out: str) -> None:
    manifest = json.loads((w.root / "out" / "manifest.json").read_text())
    assert any("EXIF orientation 6" in x and "raw picture" in x for x in manifest["warnings"]), manifest["warnings"]


case("exif-rotated-no-size-strict", 10, lambda w: convert(w, w.p("out"), "--strict", source=exif_voc(w, None)), 2,
     r"EXIF orientation 6")
case("exif-rotated-no-size-skipped", 10,
     lambda w: convert(w, w.p("out"), source=exif_voc(w, None)), 2, r"no usable image .*EXIF orientation|no usable")
case("exif-mirrored-strict", 10,
     lambda w: convert(w, w.p("out"), "--strict", source=exif_voc(w, (64, 48), orientation=2)), 2,
     r"EXIF orientation 2")
case("exif-rotated-raw-size", 10, lambda w: convert(w, w.p("out"), source=exif_voc(w, (64, 48))), 0,
     check=_check_exif_warning)


def tfrecord_with_label_map(w: World, label_map: str) -> str:
    """A converted dataset (in/tf) whose label map is then replaced by `label_map`."""
    rc = main(convert(w, w.p("in/tf"), "--classes", "with_mask,without_mask,mask_weared_incorrect"))
    assert rc == 0
    (w.inp / "tf" / "label_map.pbtxt").write_text(label_map)
    return str(w.inp / "tf")


REPEATED_ID = ('item { id: 1 name: "with_mask" }\nitem { id: 2 name: "without_mask" }\n'
               'item { id: 3 name: "mask_weared_incorrect" }\nitem { id: 2 name: "mask_weared_incorrect" }\n')
case("label-map-repeated-id", 10, lambda w: ["data", "inspect", tfrecord_with_label_map(w, REPEATED_ID)], 2,
     r"id 2")
case("label-map-id-two", 12, lambda w: ["data", "inspect", tfrecord_with_label_map(
    w, 'item { id: two name: "with_mask" }\n')], 2, r"id")

# -- mechanism 11: archives and downloads ------------------------------------------------------------------------
case("roboflow-zip-bomb", 11, roboflow("{srv}/bomb.zip"), 2, r"zip bomb")
case("roboflow-zip-escape", 11, roboflow("{srv}/escape.zip"), 2, r"outside the target folder")
case("roboflow-zip-absolute", 11, roboflow("{srv}/absolute.zip"), 2, r"outside the target folder")
case("roboflow-zip-symlink", 11, roboflow("{srv}/link.zip"), 2, r"link or special file")
case("roboflow-not-a-zip", 11, roboflow("{srv}/notzip.zip"), 2, r"not a zip or tar archive")


def _zoo_argv(w: World) -> list[str]:
    other = w.root / "workspace" / "pretrained" / "ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8" / "checkpoint"
    other.mkdir(parents=True)
    (other / "ckpt-0.index").write_bytes(b"GOOD")
    w.extra_inputs.append(other / "ckpt-0.index")
    return ["zoo", "ssd_efficientdet_d0_512", "--base-url", w.url("/zoo")]


case("zoo-archive-cannot-replace-other-checkpoints", 11, _zoo_argv, 2, r"lies outside efficientdet_d0")

# -- mechanism 8: numbers that are not numbers (examples of the issue; the walk below covers every option) -------
for argv, option in [
    (["predict", "--source", "x", "--crf", "99"], "--crf"),
    (["predict", "--source", "x", "--duration", "nan"], "--duration"),
    (["predict", "--source", "x", "--duration", "-1"], "--duration"),
    (["predict", "--source", "x", "--alert-seconds", "nan"], "--alert-seconds"),
    (["predict", "--source", "x", "--alert-margin", "nan"], "--alert-margin"),
    (["predict", "--source", "x", "--count-window", "nan"], "--count-window"),
    (["predict", "--source", "x", "--hook-timeout", "-1"], "--hook-timeout"),
    (["predict", "--source", "x", "--hook-timeout", "0"], "--hook-timeout"),
    (["predict", "--source", "x", "--hook-timeout", "nan"], "--hook-timeout"),
    (["predict", "--source", "x", "--class-threshold", "without_mask=nan"], "--class-threshold"),
    (["predict", "--source", "x", "--record-fps", "inf"], "--record-fps"),
    (["configure", "--data", "d", "--out", "o", "--image-size", "100000"], "--image-size"),
    (["configure", "--data", "d", "--out", "o", "--learning-rate", "inf"], "--learning-rate"),
    (["train", "r", "--steps-per-iteration", "-3"], "--steps-per-iteration"),
    (["train", "r", "--steps-per-iteration", "0"], "--steps-per-iteration"),
    (["train", "r", "--checkpoint-every", "-1"], "--checkpoint-every"),
    (["train", "r", "--recalibration-batches", "-5"], "--recalibration-batches"),
    (["demo", "--steps", "-5"], "--steps"),
    (["predict", "--source", "x", "--threshold", "1.5"], "--threshold"),
    (["predict", "--source", "x", "--nms-iou", "-0.1"], "--nms-iou"),
    (["predict", "--source", "x", "--threads", "0"], "--threads"),
    (["predict", "--source", "x", "--review-every", "0"], "--review-every"),
    (["train", "r", "--seed", "-2"], "--seed"),
    (["export", "r", "--calibration-images", "0"], "--calibration-images"),
    (["export", "r", "--score-floor", "2"], "--score-floor"),
    (["classifier", "r", "--margin", "nan"], "--margin"),
    (["classifier", "r", "--members", "0"], "--members"),
    (["evaluate", "r", "--image-size", "1e9"], "--image-size"),
    (["data", "convert", "--format", "voc", "--source", "s", "--out", "o", "--workers", "0"], "--workers"),
    (["data", "convert", "--format", "voc", "--source", "s", "--out", "o", "--blur-threshold", "nan"],
     "--blur-threshold"),
]:
    case(f"number-{argv[0]}{option}-{argv[-1]}", 8, lambda w, argv=argv: list(argv), 2,
         rf"error: {re.escape(option)} ")

# -- mechanism 2 (closed by helper bundle): the files beside a model are inputs -----------------------------------
for sidecar in ("label_map.pbtxt", "classifier.tflite", "tflite_input.json"):
    case(f"predict-json-onto-model-{sidecar}", 2,
         lambda w, sidecar=sidecar: ["predict", "--model", str(w.model), "--source", str(w.img), "--out",
                                     w.p("o.jpg"), "--json", str(w.model.parent / sidecar)], 2, r"input")


# --------------------------------------------------------------------------- the runner
@pytest.fixture(scope="module")
def server():
    with serve(SERVED) as srv:
        yield srv


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse
        rc = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return rc, out, err


def _params():
    for c in CASES:
        marks = [pytest.mark.xfail(strict=True, reason=c.xfail)] if c.xfail else []
        yield pytest.param(c, id=c.id, marks=marks)


@pytest.mark.parametrize("c", list(_params()))
def test_hostile_case(c: Case, tmp_path, server, capsys, caplog, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for key, value in c.env.items():
        monkeypatch.setenv(key, value)
    world = World(tmp_path, server)
    argv = c.argv(world)
    capsys.readouterr()  # what building the world printed
    before = tree_digest(world.inp)
    extra_before = {p: p.read_bytes() for p in world.extra_inputs}
    rc, out, err = run(argv, capsys)

    assert tree_digest(world.inp) == before, "an input changed"
    assert {p: p.read_bytes() for p in world.extra_inputs} == extra_before, "an input changed"
    printed = out + err + caplog.text
    assert not [s for s in SECRETS if s in printed], printed
    assert not files_with_secrets(tmp_path)
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if ERROR_LINE.match(line)]
    assert rc == c.rc, (rc, err[-2000:])
    if c.message is None:
        assert not errors, err
    else:
        assert len(errors) == 1, err
        assert re.search(c.message, errors[0]), errors[0]
    if c.check is not None:
        c.check(world, out)
    assert not list(tmp_path.rglob("*.partial*")), "a temporary output was left behind"


def test_the_corpus_has_at_least_100_cases():
    assert len(CASES) >= 100, len(CASES)


# --------------------------------------------------------------------------- mechanism 8: every numeric option
def numeric_options() -> list[tuple[str, list[str], object]]:
    """``(command, argv prefix, action)`` for every option of every command that has a ``type``."""
    import argparse

    found = []

    def walk(parser, prefix):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, prefix + [name])
            elif action.option_strings and action.type is not None:
                found.append((" ".join(prefix), prefix, action))

    walk(build_parser(), [])
    return found


def test_no_numeric_option_bypasses_the_layer():
    from maskdetect.cli import options

    raw = [(cmd, a.option_strings[-1]) for cmd, _, a in numeric_options()
           if not isinstance(a.type, Number) and a.type is not Path and getattr(a.type, "__module__", "") != options.__name__]
    assert not raw, f"options parsed by a type of their own (use maskdetect.cli.options): {raw}"
    numbers = [(cmd, a.option_strings[-1]) for cmd, _, a in numeric_options() if isinstance(a.type, Number)]
    assert len(numbers) >= 40, numbers  # every command's counts, sizes, rates and durations


BAD_VALUES = ["-1", "-0.5", "0", "nan", "NaN", "inf", "-inf", "1e400", "99999999999999999999", "1e3", "2.5",
              "abc", "", "0x10", "1_000"]
POSITIONAL = {"train": ["r"], "evaluate": ["r"], "export": ["r"], "classifier": ["r"],
              "zoo": ["ssd_efficientdet_d0_512"], "data inspect": ["p"]}
REQUIRED = {"predict": ["--source", "x"], "configure": ["--data", "d", "--out", "o"],
            "data convert": ["--format", "voc", "--source", "s", "--out", "o"], "watch": ["--out", "o"],
            "batch": ["--source", "s", "--out", "o"]}


def expected_valid(kind: Number, text: str) -> bool:
    """What the layer's own range says of `text` (parsed the way Python reads numbers)."""
    try:
        number = int(text) if kind.integer and re.fullmatch(r"[+-]?\d+", text) else None if kind.integer \
            else float(text)
    except ValueError:
        return False
    return number is not None and kind.allows(number)


@pytest.mark.parametrize("command, prefix, action",
                         [pytest.param(*o, id=f"{o[0]} {o[2].option_strings[-1]}") for o in numeric_options()
                          if isinstance(o[2].type, Number)])
def test_every_numeric_option_refuses_bad_numbers_in_one_line(command, prefix, action, capsys):
    parser = build_parser()
    option = action.option_strings[-1]
    for value in BAD_VALUES:
        argv = prefix + POSITIONAL.get(command, []) + REQUIRED.get(command, []) + [f"{option}={value}"]
        try:
            args = parser.parse_args(argv)
            code = 0
        except SystemExit as exc:
            code = exc.code
        _, err = capsys.readouterr()
        if expected_valid(action.type, value):
            assert code == 0, (argv, err)
            parsed = getattr(args, action.dest)
            assert np.isfinite(parsed) and action.type.allows(parsed), (argv, parsed)
        else:
            assert code == 2, (argv, "accepted")
            lines = err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith(f"maskdetect {command}: error: {option} "), err


def test_huge_values_are_out_of_every_range():
    for command, _, action in numeric_options():
        if isinstance(action.type, Number):
            assert action.type.high is not None and not action.type.allows(10**30), (command, action.option_strings)


# --------------------------------------------------------------------------- mechanism 10: EXIF rule vs predict
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_boxes_land_where_predict_sees_the_face(orientation, tmp_path):
    """A bright patch drawn on the raw pixels, its box declared on the raw picture: after conversion the box
    lies on the patch of the picture OpenCV (predict's reader) shows."""
    import cv2
    from PIL import Image

    from maskdetect.data.images import load_item
    from maskdetect.data.records import Item, RawBox

    raw = np.zeros((48, 80, 3), np.uint8)
    raw[6:20, 10:30] = 255
    image = Image.fromarray(raw)
    exif = image.getexif()
    exif[0x0112] = orientation
    path = tmp_path / "r.jpg"
    image.save(path, format="JPEG", quality=95, exif=exif.tobytes())
    declared = (80, 48)
    if orientation in (2, 3, 4):  # the size cannot tell which picture the box was drawn on
        declared = None
    item = Item(key="r", filename="r.jpg", image=path, declared_wh=declared)
    item.boxes.append(RawBox("with_mask", (10, 6, 30, 20)))
    loaded = load_item(item, {}, None, None)
    if declared is None and orientation != 1:
        assert loaded.skip is not None and "EXIF orientation" in loaded.skip.reason
        return
    shown = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2GRAY)
    stored = np.asarray(Image.open(io.BytesIO(loaded.sample.jpeg)).convert("L"))
    assert stored.shape == shown.shape
    x1, y1, x2, y2 = (int(round(v)) for v in loaded.sample.xyxy[0])
    assert shown[y1 + 2:y2 - 2, x1 + 2:x2 - 2].mean() > 200  # the patch, in predict's picture
    assert stored[y1 + 2:y2 - 2, x1 + 2:x2 - 2].mean() > 200


# --------------------------------------------------------------------------- signals and a full disk
def big_voc(root: Path, n: int = 150) -> Path:
    """`n` noisy 256x192 images: their reading and spooling lasts long enough for a signal to land mid-write."""
    (root / "annotations").mkdir(parents=True)
    (root / "images").mkdir()
    for i in range(n):
        (root / "images" / f"g{i}.jpg").write_bytes(jpeg_bytes(256, 192, seed=i))
        (root / "annotations" / f"g{i}.xml").write_text(voc_xml(f"g{i}.jpg", (256, 192),
                                                                 [("with_mask", 10, 10, 100, 100)]))
    return root


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """A dataset and an earlier `data convert` output of it (which a killed re-run must leave intact)."""
    root = tmp_path_factory.mktemp("sig")
    ds = big_voc(root / "ds")
    out = root / "out"
    cmd = [sys.executable, "-m", "maskdetect", "data", "convert", "--format", "voc", "--source", str(ds), "--out",
           str(out), "--split", "1,0,0", "--workers", "1"]
    assert main(cmd[3:]) == 0  # in-process: the killed runs below are fresh processes
    return ds, out, cmd


def _spawn(cmd, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_signals, **kwargs)


def _wait_for_partial(out: Path, proc: subprocess.Popen, min_bytes: int = 1) -> Path:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        for partial in out.parent.glob(f".{out.name}.*.partial"):
            spool = partial / ".spool"
            if spool.exists() and spool.stat().st_size >= min_bytes:
                return partial
        time.sleep(0.02)
    pytest.fail(f"no partial output appeared (exit {proc.poll()})")


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 128 + signal.SIGTERM),
                                       (signal.SIGHUP, 128 + signal.SIGHUP)])
def test_a_signal_mid_write_keeps_the_earlier_output_and_leaves_no_partial(converted, sig, code):
    ds, out, cmd = converted
    inputs, earlier = tree_digest(ds), tree_digest(out)
    proc = _spawn(cmd)
    _wait_for_partial(out, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("maskdetect data convert:")][-1].startswith(
        "maskdetect data convert: " + ("interrupted" if sig == signal.SIGINT else "stopped by"))
    assert tree_digest(ds) == inputs and tree_digest(out) == earlier
    assert not list(out.parent.glob(f".{out.name}.*"))


def test_sigkill_mid_write_keeps_the_earlier_output_and_the_next_run_cleans_up(converted):
    ds, out, cmd = converted
    inputs, earlier = tree_digest(ds), tree_digest(out)
    proc = _spawn(cmd)
    partial = _wait_for_partial(out, proc, min_bytes=20_000)
    proc.kill()
    proc.communicate(timeout=60)
    assert partial.exists()  # what a killed process leaves: only under its temporary name
    assert tree_digest(ds) == inputs and tree_digest(out) == earlier
    assert main(cmd[3:]) == 0  # the next run (in-process, to spare a TensorFlow import) removes the dead one's
    assert not partial.exists() and tree_digest(out) == earlier  # same input, same seed: the same bytes


def test_a_full_disk_is_one_line_and_keeps_the_earlier_output(converted):
    ds, out, cmd = converted
    inputs, earlier = tree_digest(ds), tree_digest(out)

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))  # ulimit -f: the spool outgrows it

    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, preexec_fn=small_files)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("maskdetect data convert: error:")]
    assert len(errors) == 1 and "full" in errors[0] and "Traceback" not in done.stderr, done.stderr
    assert tree_digest(ds) == inputs and tree_digest(out) == earlier
    assert not list(out.parent.glob(f".{out.name}.*"))

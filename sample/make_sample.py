"""Rebuild sample/face-mask from the Kaggle "Face Mask Detection" set (CC0): see sample/README.md.

Usage: python sample/make_sample.py /path/to/face-mask-kaggle [sample/face-mask]
"""

import random
import shutil
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

# Images kept for their quirks: a box past the right edge (231), 1-3 px boxes (64, 603, the latter also past
# the edge) and a byte-identical pair (13 == 737), so the sample exercises clipping, tiny boxes and dedup.
QUIRKS = ["maksssksksss231", "maksssksksss64", "maksssksksss603", "maksssksksss13", "maksssksksss737"]
PER_GROUP = {"mask_weared_incorrect": 11, "without_mask": 9, "with_mask": 11}


def main(src: Path, dst: Path) -> None:
    groups: dict[str, list[str]] = {k: [] for k in PER_GROUP}
    for xml in sorted(src.glob("annotations/*.xml"), key=lambda p: int(p.stem.removeprefix("maksssksksss"))):
        names = {o.findtext("name") for o in ET.parse(xml).getroot().iter("object")}
        group = next(g for g in PER_GROUP if g in names)  # the rarest class present decides the group
        if xml.stem not in QUIRKS:
            groups[group].append(xml.stem)
    rng = random.Random(0)
    stems = QUIRKS + [s for g, n in PER_GROUP.items() for s in sorted(rng.sample(groups[g], n))]
    shutil.rmtree(dst, ignore_errors=True)
    (dst / "images").mkdir(parents=True)
    (dst / "annotations").mkdir()
    for stem in stems:
        shutil.copy2(src / "annotations" / f"{stem}.xml", dst / "annotations")
        image = ET.parse(src / "annotations" / f"{stem}.xml").getroot().findtext("filename")
        shutil.copy2(src / "images" / image, dst / "images")
    print(f"{len(stems)} images -> {dst}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2] if len(sys.argv) > 2 else Path(__file__).parent / "face-mask"))

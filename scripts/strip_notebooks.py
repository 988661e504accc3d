#!/usr/bin/env python3
"""Strip outputs, execution counts and run metadata from notebooks, so that git holds only their source.

    python scripts/strip_notebooks.py                 # strip notebooks/*.ipynb in place
    python scripts/strip_notebooks.py --check [FILES] # exit 1 and name the notebooks that are not stripped

Cell tags (``parameters``) and the notebook's kernel/Colab metadata are kept. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
CELL_METADATA_KEPT = ("tags", "id")
NOTEBOOK_METADATA_KEPT = ("kernelspec", "language_info", "colab", "accelerator")


def strip(notebook: dict) -> dict:
    """The notebook without outputs, execution counts and run metadata (a new dict)."""
    notebook = json.loads(json.dumps(notebook))
    notebook["metadata"] = {k: v for k, v in notebook.get("metadata", {}).items() if k in NOTEBOOK_METADATA_KEPT}
    language = notebook["metadata"].get("language_info")
    if isinstance(language, dict):
        notebook["metadata"]["language_info"] = {"name": language.get("name", "python")}
    for cell in notebook.get("cells", []):
        cell["metadata"] = {k: v for k, v in cell.get("metadata", {}).items() if k in CELL_METADATA_KEPT}
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
    return notebook


def dumps(notebook: dict) -> str:
    """The text nbformat writes (indent 1, keys sorted, trailing newline), so stripping is stable."""
    return json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", type=Path, help="notebooks (default: notebooks/*.ipynb)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if any notebook needs stripping")
    args = parser.parse_args(argv)
    files = args.files or sorted(NOTEBOOKS.glob("*.ipynb"))
    dirty = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        stripped = dumps(strip(json.loads(text)))
        if stripped != text:
            dirty.append(path)
            if not args.check:
                path.write_text(stripped, encoding="utf-8")
    for path in dirty:
        print(f"{path}: {'has outputs or run metadata' if args.check else 'stripped'}")
    return 1 if (args.check and dirty) else 0


if __name__ == "__main__":
    sys.exit(main())

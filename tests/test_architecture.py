"""docs/architecture.md's module list is the package: every module of maskdetect/ listed once, nothing listed that
does not exist, and each with its test module, the tests that cover it indirectly, or a plain reason for none."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import REPO

DOC = REPO / "docs" / "architecture.md"


def package_modules() -> set[str]:
    """Every module of the package; an ``__init__.py`` only if it defines something (the others re-export)."""
    found = set()
    for path in (REPO / "maskdetect").rglob("*.py"):
        if path.name == "__main__.py":
            continue
        if path.name == "__init__.py":
            tree = ast.parse(path.read_text(encoding="utf-8"))
            if not any(isinstance(node, (ast.FunctionDef, ast.ClassDef)) for node in tree.body):
                continue
        found.add(path.relative_to(REPO).as_posix())
    return found


def module_rows() -> list[tuple[str, str]]:
    """``(module path, tests cell)`` of each row of the doc's "## Modules" table."""
    section = DOC.read_text(encoding="utf-8").split("\n## Modules\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`maskdetect/"):
            rows.append((cells[0].strip("`"), cells[2]))
    return rows


def import_name(module: str) -> str:
    return module.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def test_the_module_list_is_the_package():
    listed = [module for module, _ in module_rows()]
    assert len(listed) == len(set(listed)), "listed twice: " + ", ".join(m for m in listed if listed.count(m) > 1)
    assert set(listed) == package_modules(), {"not listed": sorted(package_modules() - set(listed)),
                                              "listed but absent": sorted(set(listed) - package_modules())}


def test_every_module_has_its_tests_or_says_why_not():
    """A cell names the module's own test modules (each of which imports or names it), or says ``through
    tests/...: why`` (covered by the tests of what uses it), or ``none: why``."""
    for module, cell in module_rows():
        named = re.findall(r"`(tests/[\w/]+\.py)`", cell)
        for test in named:
            assert (REPO / test).is_file(), f"{module}: {test} does not exist"
        if cell.startswith("none:"):
            assert len(cell.split()) >= 5 and not named, f"{module}: say why it has no tests ({cell!r})"
        elif cell.startswith("through "):
            assert named and ":" in cell, f"{module}: name the tests and say why ({cell!r})"
        else:
            assert named, f"{module}: no test module named ({cell!r})"
            for test in named:
                text = (REPO / test).read_text(encoding="utf-8")
                assert import_name(module) in text or module in text, f"{test} does not use {module}"


FLOORS = {  # the drawing's floors, lowest first: a module imports only from its own floor or those below
    "core": 0, "data": 1, "infer": 1, "monitor": 1, "train": 2, "site": 2,
    "cli": 3, "demo": 3, "notebook": 3, "colab": 3, "__main__": 3, "front door": 4,
}
#: Upward imports drawn as such in docs/architecture.md, each with its reason.
UPWARD = {
    # Detections.annotate() draws through the infer floor's annotator: the convenience a supervision or
    # Ultralytics user expects on the result, imported only when called.
    ("maskdetect.detections", "maskdetect.infer.annotate"),
}


def floor_of(dotted: str) -> tuple[str, int]:
    if dotted == "maskdetect":  # the package's __init__: the front door, loading every floor's names lazily
        return "front door", FLOORS["front door"]
    part = dotted.split(".")[1] if "." in dotted else "core"
    part = {"sample_video": "infer"}.get(part, part)  # drawn on infer's floor: it makes a clip with infer's video
    return part, FLOORS.get(part, 0)  # the top-level modules not named above are core


def test_imports_go_down_the_floors_only():
    """Function-level imports count too; the three middle floors (data, infer, monitor) never import each other."""
    wrong = []
    for path in (REPO / "maskdetect").rglob("*.py"):
        module = import_name(path.relative_to(REPO).as_posix())
        own, level = floor_of(module)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else \
                [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                if name.startswith("maskdetect."):
                    other, other_level = floor_of(name)
                    if (module, name) in UPWARD:
                        continue
                    if other_level > level or (other_level == level == 1 and other != own):
                        wrong.append(f"{module} imports {name}")
    assert not wrong, wrong

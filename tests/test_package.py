"""The package as a whole: stages import each other without cycles (in-function imports count too), and the
templates ship inside the package."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import maskdetect

PACKAGE = Path(maskdetect.__file__).parent


def import_graph() -> dict[str, set[str]]:
    """``module -> maskdetect modules it imports`` (top level or inside functions; not ``if TYPE_CHECKING:``)."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("maskdetect",) + path.relative_to(PACKAGE).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = {id(inner) for node in ast.walk(tree) if isinstance(node, ast.If)
                       and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
                       for stmt in node.body for inner in ast.walk(stmt)}
        for node in ast.walk(tree):
            if id(node) in typing_only:  # `if TYPE_CHECKING:` imports are for annotations, never run
                continue
            if isinstance(node, ast.ImportFrom) and node.module:
                targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t not in (name, "maskdetect")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles: strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while not group or group[-1] != node:
                group.append(stack.pop())
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles():
    graph = import_graph()
    assert "maskdetect.infer.loop" in graph and "maskdetect.infer.predictor" in graph["maskdetect.infer.loop"]
    assert cycles(graph) == []
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]  # the check can fail


def test_the_model_runtime_knows_no_sources_sinks_or_loop():
    runtime = import_graph()["maskdetect.infer.predictor"]
    assert not runtime & {"maskdetect.infer.sources", "maskdetect.infer.sinks", "maskdetect.infer.loop"}


def test_templates_are_package_data():
    from maskdetect.train.pipeline import CONFIG_DIR, MODELS

    assert CONFIG_DIR.is_relative_to(PACKAGE)
    assert all((CONFIG_DIR / spec.template).is_file() for spec in MODELS.values())


def test_the_front_door_names_load_lazily_and_unknown_names_fail():
    import pytest

    assert set(maskdetect.__all__) >= {"Predictor", "Detections", "predict_source", "Monitor", "CLASSES"}
    assert maskdetect.Detections is __import__("maskdetect.detections", fromlist=["Detections"]).Detections
    assert "Predictor" in dir(maskdetect)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        maskdetect.Nope  # noqa: B018


ABSOLUTE_PATH = re.compile(rb"(?<![\w.:/-])(?:/(?:work|home|Users|root|tmp|content|mnt|opt|srv|var|data|private)/"
                           rb"[\w.-]+|[A-Z]:\\\\[\w.-]+)")


def package_data_files() -> list[Path]:
    """What a wheel ships besides the code: every file under the package that is not Python source or bytecode."""
    return sorted(p for p in PACKAGE.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")
                  and "__pycache__" not in p.parts)


def test_no_absolute_path_of_any_machine_ships_in_the_package_data():
    """Model cards, label maps, configs and the bundled models hold paths relative to a run or by name only."""
    files = package_data_files()
    assert any(p.name.endswith(".card.json") for p in files) and any(p.suffix == ".config" for p in files)
    found = {str(p.relative_to(PACKAGE)): sorted({m.decode(errors="replace") for m in ABSOLUTE_PATH.findall(
        p.read_bytes())})[:3] for p in files}
    assert {name: paths for name, paths in found.items() if paths} == {}
    for path in (b'"/work/exp/runs/k5/checkpoints"', b"'/home/me/data'", rb'"C:\\Users\\me"'):  # it can fail
        assert ABSOLUTE_PATH.search(path), path
    assert not ABSOLUTE_PATH.search(b'"runs/k5/checkpoints", "https://example.com/home/x", "face-mask/a.xml"')

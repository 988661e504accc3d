"""Size and install time of the two pip routes, and the first prediction from the light one; prints JSON.

For each route, a fresh ``python -m venv`` gets plain ``pip install`` of a copy of the project (not editable),
constrained to the exact pins of requirements.txt so both routes install the versions the tests use:

* ``light``: ``pip install maskdetect`` (predict, Predictor and the monitor on TFLite models; no TensorFlow),
  plus the one-line ``--no-deps trackers`` step for tracking;
* ``train``: ``pip install "maskdetect[train]"`` plus the OD API's ``--no-deps`` line (compat.NODEPS_INSTALL).

Then, from the light venv, ``maskdetect predict`` on one sample image with the bundled model (wall time of the
whole command, first run and a second one), and whether TensorFlow is installed there at all.

Packages come from pip's configured index and cache (on the project's machines a local cache), so the times are
install times, not download times. Run it niced on a machine that may be busy, and say so with the figures.

Usage: ``python bench/bench_install.py [--routes light train] [--keep DIR]``
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from maskdetect.compat import NODEPS_INSTALL, TRACKERS_INSTALL  # noqa: E402

IMAGE = REPO / "sample" / "face-mask" / "images" / "maksssksksss104.jpg"


def _run(args: list[str], cwd: Path) -> float:
    started = time.monotonic()
    done = subprocess.run(args, capture_output=True, text=True, cwd=cwd)
    if done.returncode:
        raise SystemExit(f"{args}: exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return time.monotonic() - started


def _size_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def _source_copy(dest: Path) -> Path:
    """The project as pip sees a clone (package, pyproject, README), without build leftovers or __pycache__."""
    shutil.copytree(REPO / "maskdetect", dest / "maskdetect", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copyfile(REPO / name, dest / name)
    return dest


def bench_route(route: str, work: Path, source: Path) -> dict:
    venv = work / f"venv-{route}"
    python = venv / "bin" / "python"
    figures: dict = {}
    figures["venv_s"] = round(_run([sys.executable, "-m", "venv", str(venv)], work), 1)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    target = str(source) if route == "light" else f"{source}[train]"
    figures["pip_install_s"] = round(_run([*pip, "-c", str(REPO / "requirements.txt"), target], work), 1)
    extra_line = TRACKERS_INSTALL if route == "light" else NODEPS_INSTALL
    figures["no_deps_step_s"] = round(_run([*pip, *extra_line.split()[2:]], work), 1)
    figures["install_s"] = round(figures["pip_install_s"] + figures["no_deps_step_s"], 1)
    figures["venv_bytes"] = _size_bytes(venv)
    figures["venv_gb"] = round(figures["venv_bytes"] / 1e9, 3)
    has_tf = subprocess.run([str(python), "-c", "import importlib.util as u; print(u.find_spec('tensorflow') is not None)"],
                            capture_output=True, text=True).stdout.strip()
    figures["tensorflow_installed"] = has_tf == "True"
    if route == "light":
        cli = str(venv / "bin" / "maskdetect")
        for attempt in ("first_predict_s", "second_predict_s"):
            figures[attempt] = round(_run([cli, "predict", "--source", str(IMAGE), "--out", str(work / "out.jpg")],
                                          work), 2)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routes", nargs="+", choices=("light", "train"), default=["light", "train"])
    parser.add_argument("--keep", type=Path, help="build the venvs here and keep them (default: a temporary dir)")
    args = parser.parse_args(argv)
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-install-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        source = _source_copy(work / "src")
        results = {route: bench_route(route, work, source) for route in args.routes}
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"python": platform.python_version(), "machine": platform.machine(),
                      "cpus": __import__("os").cpu_count(), "date": time.strftime("%Y-%m-%d"),
                      "routes": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The notebooks' install cell on a stand-in for Colab's runtime: time, disk added and what it changed, for this
checkout and (side by side, in the same run) for an earlier commit's install.

The stand-in is a venv holding Colab's versions (COLAB_RUNTIME, installed with uv from its cache) and a
``google-colab`` distribution that pins pandas and requests as Colab's does. The install cell runs with pip, as
on Colab; pip's own cache is warm after a first run.

Usage:
    python bench/bench_colab_install.py [--baseline de353c3]   # prints JSON
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: Colab's GPU runtime (docs/od-api.md, "Google Colab"; Python 3.13 there, 3.11 here). google-colab pins pandas and
#: requests exactly: the stand-in declares those pins (requests 2.32.4 is a version it pinned), so pip reports a
#: conflict if an install touches them.
COLAB_RUNTIME = {"tensorflow": "2.20.0", "tf-keras": "2.20.1", "keras": "3.13.2", "numpy": "2.1.3",
                 "protobuf": "5.29.6", "pandas": "2.2.3", "pillow": "11.3.0", "matplotlib": "3.10.0",
                 "imageio-ffmpeg": "0.6.0", "requests": "2.32.4"}


def run(*args: str, timeout: float = 3600, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, **kwargs)
    if done.returncode:
        raise RuntimeError(f"{args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def make_colab_standin(venv: Path) -> Path:
    """A venv with COLAB_RUNTIME and a google-colab that pins pandas and requests; returns its python."""
    run(sys.executable, "-m", "venv", str(venv))
    python = venv / "bin" / "python"
    run(str(Path(sys.executable).parent / "uv"), "pip", "install", "--quiet", "--python", str(python),
        *(f"{name}=={version}" for name, version in COLAB_RUNTIME.items()))
    site = Path(run(str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    info = site / "google_colab-1.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: google-colab\nVersion: 1.0.0\n"
                                   f"Requires-Dist: pandas=={COLAB_RUNTIME['pandas']}\n"
                                   f"Requires-Dist: requests=={COLAB_RUNTIME['requests']}\n")
    (info / "RECORD").write_text("")
    return python


def versions(python: Path) -> dict[str, str]:
    code = ("import importlib.metadata as m, json; "
            "print(json.dumps({d.metadata['Name'].lower().replace('_', '-'): d.version for d in m.distributions()}))")
    return json.loads(run(str(python), "-c", code).stdout)


def disk_bytes(path: Path) -> int:
    return int(run("du", "-sb", str(path)).stdout.split()[0])


def install_cell(python: Path, repo: Path) -> dict:
    """Run the install step as notebook 01's cell does (in a kernel that has imported numpy); measure it."""
    kernel = (f"import numpy, runpy, json\nbootstrap = runpy.run_path({str(repo / 'maskdetect' / 'colab.py')!r})\n"
              f"result = bootstrap['install']({str(repo)!r})\nprint('RESULT', json.dumps(result['restart']))")
    before, size = versions(python), disk_bytes(python.parents[1])
    started = time.monotonic()
    done = run(str(python), "-c", kernel)
    seconds = time.monotonic() - started
    after = versions(python)
    output = done.stdout + done.stderr
    return {"seconds": round(seconds, 1), "added_mb": round((disk_bytes(python.parents[1]) - size) / 1e6),
            "restart": json.loads(output.split("RESULT ", 1)[1].splitlines()[0]),
            "replaced": sorted(f"{n} {before[n]}->{v}" for n, v in after.items() if before.get(n) not in (None, v)),
            "added": len([n for n in after if n not in before]),
            "pip_conflicts": "dependency conflicts" in output or "incompatible" in output}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", help="also measure this commit's install (a git ref), side by side")
    args = parser.parse_args()
    figures = {}
    with tempfile.TemporaryDirectory(prefix="bench-colab-") as tmp:
        checkouts = {"this checkout": REPO}
        if args.baseline:
            baseline = Path(tmp) / "baseline"
            run("git", "-C", str(REPO), "worktree", "add", "--detach", str(baseline), args.baseline)
            checkouts = {f"baseline {args.baseline}": baseline, **checkouts}
        try:
            for label, repo in checkouts.items():
                figures[label] = install_cell(make_colab_standin(Path(tmp) / label.replace(" ", "-")), repo)
        finally:
            if args.baseline:
                run("git", "-C", str(REPO), "worktree", "remove", "--force", str(baseline))
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()

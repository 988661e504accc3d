"""Google Colab helpers: install what the runtime lacks, check the GPU, keep runs on Drive (the browser's webcam
is a frame source: :mod:`maskdetect.infer.browser`).

The install step runs BEFORE the package's requirements are installed, so this module imports only the
standard library at module level (NumPy/PIL/TensorFlow are imported inside the functions that need them), and
it can be run as a plain script from a fresh clone::

    python REPO/maskdetect/colab.py install --repo REPO       # prints whether the runtime must restart

or, from a notebook cell, loaded by path so that it can see what the running kernel has imported::

    import runpy
    bootstrap = runpy.run_path(f"{REPO}/maskdetect/colab.py")
    result = bootstrap["install"](REPO)                          # result["restart"] is True or False

`install` keeps what Colab ships (TensorFlow 2.20, tf_keras, NumPy, protobuf 5, pandas, Pillow): it asks pip
for the dependency ranges declared in ``pyproject.toml``, which those versions satisfy, then adds the OD API
packages of ``requirements-nodeps.txt`` without their dependencies (docs/od-api.md), then
``pip install --no-deps -e REPO``. It says plainly whether the runtime must be restarted: a package the kernel
has already imported changed under it, or TensorFlow was imported before ``TF_USE_LEGACY_KERAS=1`` was set (the
Keras switch only works before TensorFlow's first import). On Colab neither happens.

:data:`REPO_URL` is the one place where the project's repository is named (a placeholder until it is
published); the notebooks' "Open in Colab" links are built from it by :func:`colab_url`.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__" and sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]  # run as a script: the package's own modules must not shadow the standard library

import argparse  # noqa: E402
import importlib.metadata  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Sequence  # noqa: E402

# The project's repository, a placeholder until it is published. Set it with
# `python maskdetect/colab.py set-repo https://github.com/YOU/maskdetect`: that rewrites this line and its copies
# (REPO_FILES: the notebooks' REPO_URL and badges, the README's links), which tests/test_notebooks.py checks.
REPO_URL = "https://github.com/OWNER/maskdetect"
PLACEHOLDER_OWNER = "OWNER"
REPO_FILES = ("maskdetect/colab.py", "README.md", "notebooks/01-train-on-colab.ipynb",
              "notebooks/02-video-and-webcam.ipynb")
DRIVE_MOUNT = "/content/drive"
DRIVE_RUNS = "MyDrive/maskdetect/runs"
REQUIREMENTS_NODEPS = "requirements-nodeps.txt"
KERAS_SWITCH = ("TF_USE_LEGACY_KERAS", "1")

# Distribution name -> top-level module, where they differ (to tell whether the kernel has imported it).
_MODULE_OF = {"tf-keras": "tf_keras", "protobuf": "google.protobuf", "pyyaml": "yaml", "pillow": "PIL",
              "opencv-python-headless": "cv2", "opencv-python": "cv2", "gin-config": "gin",
              "tf-models-research-object-detection": "object_detection", "tf-models-official": "official"}



def in_colab() -> bool:
    """True inside a Google Colab runtime."""
    return "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ or "COLAB_GPU" in os.environ


def colab_url(notebook: str, repo_url: str = REPO_URL, branch: str = "main") -> str:
    """The "Open in Colab" link of ``notebooks/<notebook>`` in `repo_url` (a GitHub repository).

    Example:
        >>> colab_url("01-train-on-colab.ipynb", "https://github.com/me/maskdetect")
        'https://colab.research.google.com/github/me/maskdetect/blob/main/notebooks/01-train-on-colab.ipynb'
    """
    owner, name = _owner_and_name(repo_url)
    return f"https://colab.research.google.com/github/{owner}/{name}/blob/{branch}/notebooks/{notebook}"


def _owner_and_name(repo_url: str) -> tuple[str, str]:
    match = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+?)(?:\.git)?/?", repo_url)
    if not match:
        raise ValueError(f"{redact(repo_url)}: not a https://github.com/OWNER/REPO URL")
    return match.group(1), match.group(2)


def set_repo(repo_url: str, root: str | Path = Path(__file__).resolve().parents[1]) -> list[Path]:
    """Name the project's GitHub repository in every place that links to it (REPO_FILES under `root`): the
    ``REPO_URL`` line of this file, the notebooks' clone URL and "Open in Colab" badges, the README's badges.

    Returns:
        The files changed.
    """
    new_owner, new_name = _owner_and_name(repo_url)
    source = Path(root) / REPO_FILES[0]
    current = re.search(r'^REPO_URL = "([^"]+)"', source.read_text(encoding="utf-8"), re.MULTILINE).group(1)
    old_owner, old_name = _owner_and_name(current)
    changed = []
    for name in REPO_FILES:
        path = Path(root) / name
        text = path.read_text(encoding="utf-8")
        updated = text.replace(f'REPO_URL = "{current}"', f'REPO_URL = "https://github.com/{new_owner}/{new_name}"')
        for prefix in ("github.com/", "colab.research.google.com/github/"):
            updated = updated.replace(f"{prefix}{old_owner}/{old_name}", f"{prefix}{new_owner}/{new_name}")
        if updated != text:
            path.write_text(updated, encoding="utf-8")
            changed.append(path)
    return changed


def _load_redact():
    """:func:`maskdetect.redact.redact`, the one set of rules. This file also runs by path before the package is
    installed (and importing the package would install its compatibility layer into the kernel): redact.py
    uses only the standard library, so it is then loaded from beside this file."""
    if __package__ == "maskdetect":
        from maskdetect.redact import redact as package_redact

        return package_redact
    import runpy

    return runpy.run_path(str(Path(__file__).with_name("redact.py")))["redact"]


redact = _load_redact()


# --- install -------------------------------------------------------------------------------------------------
def normalize(name: str) -> str:
    """PEP 503 name: ``PyYAML`` -> ``pyyaml``, ``tf_keras`` -> ``tf-keras``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: str | Path) -> dict[str, str]:
    """``{normalized name: version}`` of the ``name==version`` lines of a requirements file.

    Raises:
        ValueError: a requirement that is not pinned with ``==`` (this project pins everything).
    """
    pins: dict[str, str] = {}
    for number, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*==\s*([^\s;]+)", line)
        if not match:
            raise ValueError(f"{path}:{number}: {line!r} is not pinned as name==version")
        pins[normalize(match.group(1))] = match.group(2)
    return pins


def declared_dependencies(repo: str | Path, extras: Sequence[str] = ()) -> list[str]:
    """The requirement strings of ``pyproject.toml`` (``[project] dependencies`` plus the chosen `extras`)."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        from pip._vendor import tomli as tomllib  # type: ignore[no-redef]

    project = tomllib.loads((Path(repo) / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [extra for extra in extras if extra not in optional]
    if unknown:
        raise ValueError(f"unknown extra(s) {unknown}: pyproject.toml offers {sorted(optional)}")
    return list(project.get("dependencies", [])) + [dep for extra in extras for dep in optional[extra]]


def installed_versions() -> dict[str, str]:
    """``{normalized name: version}`` of every distribution visible to this Python."""
    versions: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"] if dist.metadata else None
        if name:
            versions.setdefault(normalize(name), dist.version)
    return versions


def _same_version(installed: str | None, wanted: str) -> bool:
    # PEP 440: "==2.21.0" is satisfied by a local build such as "2.21.0+cu121"
    return installed is not None and installed.split("+", 1)[0] == wanted


def plan_nodeps(repo: str | Path, installed: dict[str, str] | None = None) -> dict[str, tuple[str | None, str]]:
    """The pins of ``requirements-nodeps.txt`` that differ from what is installed: ``{name: (installed, wanted)}``."""
    installed = installed_versions() if installed is None else installed
    pins = read_pins(Path(repo) / REQUIREMENTS_NODEPS)
    return {name: (installed.get(name), version) for name, version in pins.items()
            if not _same_version(installed.get(name), version)}


def _editable_install_of(repo: Path) -> bool:
    """True if ``maskdetect`` is already installed in editable mode from `repo`."""
    try:
        direct = importlib.metadata.distribution("maskdetect").read_text("direct_url.json")
    except importlib.metadata.PackageNotFoundError:
        return False
    if not direct:
        return False
    info = json.loads(direct)
    url = info.get("url", "")
    return bool(info.get("dir_info", {}).get("editable")) and url.startswith("file://") and \
        Path(url[len("file://"):]).resolve() == repo.resolve()


def _pip(args: Sequence[str], python: str) -> str:
    """Run ``pip install ARGS`` quietly; its output, redacted (it is printed only when pip has something to say)."""
    command = [python, "-m", "pip", "install", "--quiet", "--progress-bar", "off", "--disable-pip-version-check",
               *args]
    print("$ pip install " + redact(" ".join(a for a in args if a != "-")), flush=True)
    process = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if process.stderr.strip():
        print(redact(process.stderr.strip()), flush=True)
    if process.returncode:
        raise RuntimeError(f"pip install failed (exit {process.returncode}); see its output above")
    return process.stdout


def _pip_plan(requirements: Sequence[str], python: str) -> dict[str, str]:
    """``{name: version}`` that ``pip install REQUIREMENTS`` would install (pip's --dry-run report)."""
    report = json.loads(_pip(["--dry-run", "--report", "-", *requirements], python) or "{}")
    return {normalize(item["metadata"]["name"]): item["metadata"]["version"] for item in report.get("install", [])}


def restart_reasons(changed: Sequence[str], kernel_modules: Sequence[str], keras_switch_late: bool) -> list[str]:
    """Why the kernel must restart after `changed` distributions were installed (empty: it need not)."""
    loaded = set(kernel_modules)
    stale = [name for name in sorted(changed) if _MODULE_OF.get(name, name.replace("-", "_")) in loaded]
    reasons = []
    if stale:
        reasons.append(f"this kernel had already imported {', '.join(stale)}, which changed under it")
    if keras_switch_late:
        reasons.append(f"TensorFlow was imported before {KERAS_SWITCH[0]}={KERAS_SWITCH[1]} was set")
    return reasons


def install(repo: str | Path, *, python: str | None = None, dry_run: bool = False, extras: Sequence[str] = (),
            kernel_modules: Sequence[str] | None = None, in_kernel: bool = True) -> dict[str, Any]:
    """Add what the runtime lacks for maskdetect, keeping what it has (on Colab: its TensorFlow, NumPy, protobuf).

    Three steps, each a no-op when already done:

    1. the dependencies declared in ``pyproject.toml``: ranges that Colab's own packages satisfy (TensorFlow
       2.20-2.21, protobuf 5-7, NumPy 1.26-2.x, ...), so pip keeps them and installs only what is missing (no
       runtime restart, no pip conflict lines against google-colab's pins);
    2. the pins of ``requirements-nodeps.txt`` (the OD API and tf-models-official) that differ, ``--no-deps``
       (their declared dependencies pin old packages: docs/od-api.md);
    3. ``pip install --no-deps -e REPO`` unless maskdetect is already installed editable from `repo`.

    Args:
        repo: the cloned repository (holds ``pyproject.toml`` and ``requirements-nodeps.txt``).
        python: the interpreter to install into (default: this one, i.e. the notebook's kernel).
        dry_run: only print and return what would change (pip's ``--dry-run`` report).
        extras: optional dependency groups of ``pyproject.toml`` to add (e.g. ``["roboflow"]``).
        kernel_modules: modules the running kernel has imported (default: ``sys.modules`` of this process,
            which IS the kernel when this is called from a notebook cell).
        in_kernel: False when run as a script (``!python colab.py install``): the kernel's modules cannot be
            seen from there, so the message names what changed and leaves the decision to the user.

    Returns:
        ``{"changed": {name: [old, new]}, "restart": bool, "reason": str}``: ``changed`` is every distribution
        that changed (what would change, in a dry run); ``restart`` is True when a package the kernel has
        imported was changed under it, or TensorFlow was imported before the Keras switch was set.
    """
    repo = Path(repo).resolve()
    python = python or sys.executable
    modules = list(sys.modules) if kernel_modules is None else list(kernel_modules)
    keras_switch_late = "tensorflow" in modules and os.environ.get(KERAS_SWITCH[0]) != KERAS_SWITCH[1]
    os.environ[KERAS_SWITCH[0]] = KERAS_SWITCH[1]  # for TensorFlow imported later in this kernel

    dependencies = declared_dependencies(repo, extras)
    before = installed_versions()
    nodeps = plan_nodeps(repo, before)
    if dry_run:
        planned = {**_pip_plan(dependencies, python), **{name: new for name, (_, new) in nodeps.items()}}
        changed = {name: [before.get(name), new] for name, new in sorted(planned.items())}
    else:
        _pip(dependencies, python)
        if nodeps:
            _pip(["--no-deps", *(f"{name}=={version}" for name, (_, version) in nodeps.items())], python)
        if _editable_install_of(repo) and python == sys.executable:
            print(f"maskdetect is already installed from {repo}.", flush=True)
        else:
            _pip(["--no-deps", "-e", str(repo)], python)
        importlib.invalidate_caches()
        if in_kernel and importlib.util.find_spec("maskdetect") is None:
            sys.path.insert(0, str(repo))  # a running kernel does not read the .pth of a new editable install
        after = installed_versions()
        changed = {name: [before.get(name), after.get(name)] for name in sorted(set(before) | set(after))
                   if before.get(name) != after.get(name) and name != "maskdetect"}
    for name, (old, new) in changed.items():
        print(f"  {name}: {old or 'not installed'} -> {new}", flush=True)
    if not changed:
        print("Everything maskdetect needs is already installed.", flush=True)

    reasons = restart_reasons(list(changed), modules, keras_switch_late)
    if reasons:
        print("RESTART NEEDED: " + "; ".join(reasons) + ". Restart the runtime (Colab: Runtime > Restart session), "
              "then run the notebook again from the top: this step will find nothing left to install.", flush=True)
    elif changed and not in_kernel:
        print("Installed. If a Python kernel had already imported any of the packages above, restart it before "
              "using maskdetect (Colab: Runtime > Restart session).", flush=True)
    else:
        print("No restart needed: continue with the next cell.", flush=True)
    return {"changed": changed, "restart": bool(reasons), "reason": "; ".join(reasons)}


def gpu_report() -> dict[str, Any]:
    """Which GPUs TensorFlow sees, after the install (call it after ``import maskdetect``); says what to do if none.

    Returns:
        ``{"tensorflow": version, "gpus": [names], "cuda_build": bool}``.
    """
    import tensorflow as tf

    gpus = [device.name for device in tf.config.list_physical_devices("GPU")]
    cuda_build = tf.test.is_built_with_cuda()
    print(f"TensorFlow {tf.__version__}: {len(gpus)} GPU(s) {', '.join(gpus)}".rstrip(), flush=True)
    if not gpus and in_colab():
        print("No GPU: choose one (Runtime > Change runtime type > T4 GPU), then run the notebook again from the "
              "top. If this runtime has one and TensorFlow does not see it, Colab's TensorFlow was replaced by an "
              "earlier install: Runtime > Disconnect and delete runtime, then run again (this install keeps "
              "Colab's own).", flush=True)
    elif not gpus:
        print(f"No GPU visible to TensorFlow (CUDA build: {'yes' if cuda_build else 'no'}): training runs on the "
              "CPU, many times slower.", flush=True)
    return {"tensorflow": tf.__version__, "gpus": gpus, "cuda_build": bool(cuda_build)}


def restart_runtime() -> None:
    """Restart the Jupyter/Colab kernel (after :func:`install` said so); the user then runs the notebook again."""
    print("Restarting the runtime now. When it is back, run the notebook again from the top.", flush=True)
    from IPython import get_ipython  # type: ignore[import-not-found]

    shell = get_ipython()
    if shell is None or not hasattr(shell, "kernel"):
        raise RuntimeError("not in a Jupyter kernel: restart Python yourself")
    shell.kernel.do_shutdown(restart=True)


def clone(repo_url: str, dest: str | Path, *, branch: str | None = None) -> Path:
    """``git clone --depth 1`` `repo_url` into `dest` unless `dest` already holds a clone; return `dest`."""
    dest = Path(dest)
    if (dest / ".git").exists() or (dest / "pyproject.toml").exists():
        print(f"{dest}: already there; not cloning again.", flush=True)
        return dest
    command = ["git", "clone", "--depth", "1", *(["--branch", branch] if branch else []), repo_url, str(dest)]
    print("$ " + redact(" ".join(command)), flush=True)
    process = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if process.returncode:
        raise RuntimeError(f"git clone failed: {redact(process.stdout.strip())}")
    return dest


# --- Google Drive --------------------------------------------------------------------------------------------
def mount_drive(mount_point: str | Path = DRIVE_MOUNT) -> Path:
    """Mount Google Drive at `mount_point` (Colab asks the user to allow it, once) and return the mount point."""
    from google.colab import drive  # type: ignore[import-not-found]

    drive.mount(str(mount_point))
    return Path(mount_point)


def run_dir_for(name: str, local_runs: str | Path, *, drive_mount: str | Path | None = None,
                drive_runs: str = DRIVE_RUNS) -> Path:
    """Where the run `name` lives: ``<Drive>/<drive_runs>/<name>`` with `drive_mount` (Drive is mounted first),
    so that checkpoints are saved to Drive while training and a new runtime resumes from them; else
    ``<local_runs>/<name>``.

    Raises:
        RuntimeError: `drive_mount` given but not on Colab (no ``google.colab``).
    """
    if drive_mount is None:
        return Path(local_runs) / name
    try:
        import google.colab  # type: ignore[import-not-found]  # noqa: F401
    except ImportError as exc:
        raise RuntimeError("a run on Google Drive needs Colab; off Colab pass drive_mount=None") from exc
    run_dir = mount_drive(drive_mount) / drive_runs / name
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    checkpoints = sorted((run_dir / "checkpoints").glob("ckpt-*.index"))
    print(f"run directory on Google Drive: {run_dir}" +
          (f" (resuming: {len(checkpoints)} checkpoint(s) there)" if checkpoints else ""), flush=True)
    return run_dir


# --- command line --------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python maskdetect/colab.py", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    inst = commands.add_parser("install", help="install what this Python lacks for maskdetect, then the package")
    inst.add_argument("--repo", default=str(Path(__file__).resolve().parents[1]),
                      help="the cloned repository (default: the one holding this file)")
    inst.add_argument("--dry-run", action="store_true", help="only print what would change")
    inst.add_argument("--extra", action="append", default=[], metavar="NAME",
                      help="an optional dependency group of pyproject.toml to add, e.g. roboflow (repeatable)")
    commands.add_parser("colab-url", help="print the Open-in-Colab links of the notebooks")
    named = commands.add_parser("set-repo", help="name the project's GitHub repository in the README's and the "
                                "notebooks' links and clone URL (replaces the placeholder OWNER)")
    named.add_argument("url", help="https://github.com/YOU/maskdetect")
    args = parser.parse_args(argv)
    if args.command == "install":
        try:
            install(args.repo, dry_run=args.dry_run, extras=args.extra, kernel_modules=(), in_kernel=False)
        except (RuntimeError, ValueError, OSError) as exc:
            print(f"error: {redact(str(exc))}", file=sys.stderr)
            return 1
        return 0
    if args.command == "set-repo":
        try:
            changed = set_repo(args.url)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print("updated: " + (", ".join(str(p) for p in changed) or "nothing (already set)"))
        return 0
    if _owner_and_name(REPO_URL)[0] == PLACEHOLDER_OWNER:
        print("warning: REPO_URL is still the placeholder OWNER; run: python maskdetect/colab.py set-repo "
              "https://github.com/YOU/maskdetect", file=sys.stderr)
    for notebook in ("01-train-on-colab.ipynb", "02-video-and-webcam.ipynb"):
        print(colab_url(notebook))
    return 0


if __name__ == "__main__":
    sys.exit(main())

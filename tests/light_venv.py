"""Run ``maskdetect ARGS`` as in the light install (``pip install maskdetect``: no TensorFlow, no OD API).

Usage: ``python tests/light_venv.py REPORT.json ARGS...``. Every module that only the ``train`` extra or the
no-deps step brings (``maskdetect.compat.TRAIN_MODULES`` and ``NODEPS_MODULES``, ``trackers`` excepted, which the
light install adds with its own one-line step) is made unimportable, as it is in a venv without it; each attempt to
import one is recorded. REPORT.json gets ``{"exit": code, "blocked": [names tried], "modules": [loaded names]}``.
Used by tests/test_install.py and tests/test_logs.py: cheaper than a second venv, and stricter than a
``sys.modules`` check, since a caught ImportError (a silent fallback to TensorFlow) is recorded too.
"""

from __future__ import annotations

import importlib.abc
import json
import sys


def main() -> int:
    report_path, args = sys.argv[1], sys.argv[2:]
    from maskdetect import compat

    blocked_tops = (set(compat.TRAIN_MODULES) | set(compat.NODEPS_MODULES)) - {"trackers"}
    tried: list[str] = []

    class _Absent(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path=None, target=None):
            if fullname.split(".")[0] in blocked_tops:
                tried.append(fullname)
                raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
            return None

    sys.meta_path.insert(0, _Absent())
    from maskdetect.cli import main as cli_main

    code = 1
    try:
        code = cli_main(args)
    finally:
        with open(report_path, "w", encoding="utf-8") as f:
            json.dump({"exit": code, "blocked": sorted(set(tried)), "modules": sorted(sys.modules)}, f)
    return code


if __name__ == "__main__":
    sys.exit(main())

"""The ``maskdetect`` command line: a thin dispatcher onto the package's functions.

Each submodule registers its commands with ``register(subparsers)`` and imports heavy libraries
(TensorFlow, OpenCV) only inside the command it runs, so ``maskdetect --help`` is instant. Numeric options go
through :mod:`maskdetect.cli.options`; a bad option is one line on stderr (no usage block) and exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import logging
import re
import signal
import sys
import traceback
from typing import Iterator, NoReturn

from maskdetect import logs
from maskdetect.errors import MaskdetectError
from maskdetect.redact import quiet_third_party_loggers, redact

COMMAND_MODULES = ("data", "run", "predict", "site")


#: errno values of a full disk, a full quota and the file-size limit (``ulimit -f``).
FULL_DISK = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP (``docker stop``, ``systemctl stop``, a closed terminal): unwound like Ctrl-C, so every
    output being written is finished or removed as on Ctrl-C, and the exit status is 128 + the signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    """While a command runs: SIGTERM and SIGHUP raise :class:`Stopped` where they still have their default
    (killing) action; a handler the command installs itself takes precedence. Restored afterwards."""
    def stop(signum, _frame):
        raise Stopped(signum)

    previous = {}
    for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        try:
            if sig is not None and signal.getsignal(sig) == signal.SIG_DFL:
                previous[sig] = signal.signal(sig, stop)
        except ValueError:  # not the main thread: leave signals alone
            pass
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


_OPTION_VALUE = re.compile(r"^argument (-[^\s:/]+)(?:/\S+)?: ('?\S*'? is (?:out of range|not ))")


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error: ``maskdetect CMD: error: ... (see maskdetect CMD --help)``, exit 2. Its
    subcommands' parsers are of this class too (``add_subparsers`` makes them of the parent's class)."""

    def error(self, message: str) -> NoReturn:
        one_line = redact(" ".join(message.split()))
        # "argument --steps: -5 is out of range: ..." (maskdetect.cli.options) reads "--steps -5 is out of range"
        one_line = _OPTION_VALUE.sub(r"\1 \2", one_line)
        self.exit(2, f"{self.prog}: error: {one_line} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="maskdetect", description="Face-mask detection on the TF2 OD API.")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log debug messages, and show TensorFlow's own log lines and warnings")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"maskdetect.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.configure(verbose=args.verbose)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    quiet_third_party_loggers()  # their request lines stay out even with -v (and are redacted if they come)
    name = " ".join(filter(None, (args.command, getattr(args, "data_command", None))))
    try:
        with _stop_on_signals():
            return int(args.func(args) or 0)
    except MaskdetectError as exc:
        print(f"maskdetect {name}: error: {redact(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in FULL_DISK:
            print(redact(traceback.format_exc()), file=sys.stderr, end="")
            return 1
        where = f" writing {exc.filename}" if exc.filename else ""
        print(f"maskdetect {name}: error: {exc.strerror}{redact(where)}: the disk (or the file-size limit) "
              f"is full; the output being written under a temporary name was removed. Free some space and run "
              f"again.", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        from maskdetect.compat import install_hint

        hint = install_hint(exc.name)
        if hint is None:
            raise
        print(f"maskdetect {name}: error: {exc.name} is not installed; `maskdetect {args.command}` needs it. "
              f"Install it with:\n  " + hint.replace("\n", "\n  "), file=sys.stderr)
        return 2
    except Stopped as exc:
        print(f"maskdetect {name}: stopped by {signal.Signals(exc.signum).name}", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        print(f"maskdetect {name}: interrupted", file=sys.stderr)
        return 130
    except Exception:  # a bug: the traceback, with secrets hidden like everything else we print
        print(redact(traceback.format_exc()), file=sys.stderr, end="")
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""``hqms`` command line.

Each sub-command lives in the module that does the work; that module exposes
``register(subparsers)`` which adds its parser and sets ``func``. Modules are imported only
when listed here, so ``hqms --help`` stays fast.

The synthetic-data tooling (``hqms generate`` and the main job that runs it, ``hqms demo``) is
not part of the pipeline: no pipeline module imports the generator (tests/test_import_graph.py),
the production image leaves ``hqms.generate`` out (``.dockerignore``), and its commands are
registered only where the generator is installed.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

from hqms.errors import UserError
from hqms.textsafe import printable

#: Modules that contribute sub-commands, in help order.
COMMAND_MODULES = (
    "hqms.config_cli",
    "hqms.embedded_s3",
    "hqms.live",
    "hqms.intake.cli",
    "hqms.tran",
    "hqms.quality",
    "hqms.ingest.cli",
    "hqms.hospitals",
    "hqms.codes",
    "hqms.accounts",
    "hqms.web.app",
    "hqms.vault",
    "hqms.keys",
    "hqms.marts.cli",
    "hqms.bulletin.cli",
    "hqms.doctor",
    "hqms.alerts",
    "hqms.ops",
)
#: The synthetic-data tooling, listed after the pipeline's commands when the generator is there.
TOOLING_MODULES = ("hqms.generate.cli", "hqms.demo")


def _escaped(text: str) -> str:
    """``text`` with each line's control characters escaped (:func:`hqms.textsafe.printable`)."""
    return "\n".join(printable(line) for line in text.split("\n"))


class _Parser(argparse.ArgumentParser):
    """argparse, whose errors echo the offending argument (``invalid choice: …``), escaped."""

    def _print_message(self, message: str, file=None) -> None:
        super()._print_message(_escaped(message) if message else message, file)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hqms", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    tooling = TOOLING_MODULES if importlib.util.find_spec("hqms.generate") else ()
    for name in (*COMMAND_MODULES, *tooling):
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = args.func(args)
    except UserError as exc:  # messages echo arguments: escaped like every hospital-sent text
        print(f"hqms: {printable(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into `head` and friends
        sys.stderr.close()
        return 0
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())

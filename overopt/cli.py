"""`overopt` command line: study, fit, figures, sweep.

Exit codes: 0 ok, 1 run failure, 2 bad input (one line on stderr, no traceback, nothing written).
Each verb lives in its own module with `add_arguments(parser)` and `run(args)`; only the chosen
verb's module is imported, so `overopt --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from core.errors import UsageError


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad arguments as one line and exit code 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        verb = self.prog.split()[1:]  # "overopt fit" -> ["fit"]
        raise UsageError(f"{verb[0]}: {message}" if verb else message)


# verb -> (module, help); each module has `add_arguments(parser)` and `run(args) -> int`.
VERBS = {
    "study": ("study.cli", "run the whole pipeline: world, policy, proxies, BoN, PPO, fits, figures, report"),
    "fit": ("scaling.fit_cli", "fit the over-optimization laws to runs or points files"),
    "figures": ("figures.cli", "regenerate every figure (and the report) from stored runs"),
    "sweep": ("sweeps.cli", "launch a sweep grid from a TOML spec, or show its status"),
}


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The parser; only the chosen verb's module is imported (to add its arguments)."""
    parser = _Parser(prog="overopt", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version="overopt 0.1.0")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    for name, (module, help_) in VERBS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(_module=module)
        if name == verb:
            try:
                mod = importlib.import_module(module)
            except ModuleNotFoundError as e:
                if e.name != module:
                    raise
                raise UsageError(f"'overopt {name}' is not available in this build") from None
            mod.add_arguments(p)
    return parser


def _verb(argv: list[str]) -> str | None:
    """The verb named on the command line: the first argument that is not an option."""
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    try:
        argv = sys.argv[1:] if argv is None else list(argv)
        parser = build_parser(_verb(argv))
        args = parser.parse_args(argv)
        if args.verb is None:
            parser.print_help()
            return 0
        return int(importlib.import_module(args._module).run(args) or 0)
    except UsageError as e:
        print(f"overopt: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("overopt: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

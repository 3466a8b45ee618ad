"""`overopt` command line: study, fit, figures, sweep.

Exit codes: 0 ok, 1 run failure, 2 bad input (one line on stderr, no traceback, nothing written).
Each verb lives in its own module with `add_arguments(parser)` and `run(args)`; verb modules import JAX inside `run`, so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from scaling.errors import UsageError


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad arguments as one line and exit code 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        raise UsageError(f"{self.prog}: {message}")


# verb -> (module, help); each module has `add_arguments(parser)` and `run(args) -> int`.
VERBS = {
    "study": ("scaling.study", "run the whole pipeline: world, policy, proxies, BoN, PPO, fits, figures, report"),
    "fit": ("scaling.fit_cli", "fit the over-optimization laws to runs or points files"),
    "figures": ("figures.cli", "regenerate every figure (and the report) from stored runs"),
    "sweep": ("sweeps.cli", "launch a sweep grid from a TOML spec, or show its status"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="overopt", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version="overopt 0.1.0")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    for verb, (module, help_) in VERBS.items():
        p = sub.add_parser(verb, help=help_, description=help_)
        p.set_defaults(_module=module)
        mod = _load(module)
        if mod is not None:
            mod.add_arguments(p)
    return parser


def _load(module: str):
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:  # a verb whose module is not there yet
        if e.name == module:
            return None
        raise


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.verb is None:
            parser.print_help()
            return 0
        mod = _load(args._module)
        if mod is None:
            raise UsageError(f"overopt {args.verb}: not available in this build")
        return int(mod.run(args) or 0)
    except UsageError as e:
        print(f"overopt: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("overopt: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

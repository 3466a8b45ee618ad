"""`overopt` command line: study, fit, figures, sweep, verify.

Exit codes: 0 ok; 2 bad input or an expected failure (a bad flag, config, spec or table; a file that
cannot be read or written; an input nested too deeply or too large): one line on stderr, no
traceback, nothing written; 1 a run that failed (a sweep with failed points) or an unexpected error:
one line on stderr, the traceback only with the global `--debug` flag; 130 interrupted.
Each verb lives in its own module with `add_arguments(parser)` and `run(args)`; only the chosen
verb's module is imported, so `overopt --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

from core.errors import UsageError
from core.outputs import check_targets, protect_inputs


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad arguments as one line and exit code 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        verb = self.prog.split()[1:]  # "overopt fit" -> ["fit"]
        raise UsageError(f"{verb[0]}: {message}" if verb else message)


# verb -> (module, help); each module has `add_arguments(parser)` and `run(args) -> int`, and where the verb
# writes, `output_targets(args)`: its outputs as (flag, path, kind) (core.outputs.check_targets), checked
# before it starts.
VERBS = {
    "study": ("study.cli", "run the whole pipeline: world, policy, proxies, BoN, PPO, fits, figures, report"),
    "fit": ("overopt.fit", "fit the over-optimization laws to runs or points files"),
    "figures": ("figures.cli", "regenerate every figure (and the report) from stored runs"),
    "sweep": ("sweeps.cli", "launch a sweep grid from a TOML spec, or show its status"),
    "verify": ("overopt.verify", "check every run under DIR against its manifest; changes nothing"),
    "bon": ("overopt.bon", "best-of-n points and fits from your own samples (prompt, proxy, gold)"),
}


RECORD_READS = ("fit", "bon")
"""Verbs whose every file read (core.safe_read) is an input too, never written over: they write only the
outputs their flags name."""


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The parser; only the chosen verb's module is imported (to add its arguments)."""
    parser = _Parser(prog="overopt", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version="overopt 0.1.0")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an unexpected error")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    for name, (module, help_) in VERBS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(_module=module)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
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


def _input_paths(parser: argparse.ArgumentParser, args) -> list[str]:
    """The paths the verb's positional arguments name (a trailing ":bon"/":rl" of `fit` dropped): its inputs."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    verb_parser = sub.choices[args.verb]
    out = []
    for action in verb_parser._actions:
        if action.option_strings:
            continue
        value = getattr(args, action.dest, None)
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(v, (str, os.PathLike)):
                out += [str(v), str(v).rsplit(":", 1)[0]]
    return out


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


def expected_failure(e: BaseException) -> str | None:
    """The one-line message of an expected failure (exit 2), or None for an unexpected one."""
    if isinstance(e, UsageError):
        return str(e)
    if isinstance(e, OSError):  # unreadable or unwritable files, a full disk, a dangling link
        what = e.strerror or type(e).__name__
        where = f"{e.filename}: " if e.filename else ""
        return f"{where}{what[0].lower()}{what[1:]}" + (f" ({e.filename2})" if e.filename2 else "")
    if isinstance(e, UnicodeDecodeError):
        return f"an input file is not UTF-8 text ({e.reason} at byte {e.start})"
    if isinstance(e, RecursionError):
        return "an input is nested too deeply"
    if isinstance(e, MemoryError):
        return "out of memory: an input or a setting is too large"
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv[: argv.index("--")] if "--" in argv else "--debug" in argv
    try:
        parser = build_parser(_verb(argv))
        args = parser.parse_args(argv)
        if args.verb is None:
            parser.print_help()
            return 0
        module = importlib.import_module(args._module)
        targets = list(getattr(module, "output_targets", lambda _: [])(args))
        own = [path for _, path, kind in targets if kind != "file"]  # its own directories: written, not read
        with protect_inputs(_input_paths(parser, args), skip=own, record=args.verb in RECORD_READS):
            check_targets(targets)  # every output checked before any work: never over an input, regular files only
            return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("overopt: interrupted", file=sys.stderr)
        return 130
    except SystemExit as e:  # argparse's --help and --version
        return e.code if isinstance(e.code, int) else 0
    except Exception as e:
        message = expected_failure(e)
        if debug:
            traceback.print_exc()
        if message is not None:
            print(f"overopt: error: {_one_line(message)}", file=sys.stderr)
            return 2
        if not debug:
            line = _one_line(f"{type(e).__name__}: {e}")
            print(f"overopt: internal error: {line} (run with --debug for the traceback)", file=sys.stderr)
        return 1


def entry() -> None:
    """The command line's entry point (`overopt`, `python -m overopt`): `main`, its output flushed, then the
    process ends at once with its exit code, without the interpreter's teardown. Every output is written (and
    renamed into place) before `main` returns; the teardown only destroyed the libraries' state, and pyarrow's
    thread pools aborted there now and then (SIGABRT, "terminate called without an active exception": 5 of
    100 runs of `overopt verify` on a finished study, apache/arrow#34314), turning a finished command's exit
    0, 1 or 2 into -6."""
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader that left (BrokenPipeError), a closed stream
            pass
    os._exit(code)


if __name__ == "__main__":
    entry()

"""The command line's entry point ends the process with main's exit code and its output flushed, without
the interpreter's teardown (where pyarrow's thread pools aborted now and then: overopt.cli.entry)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_console_script_and_module_use_entry():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["overopt"] == "overopt.cli:entry"
    assert "entry()" in (ROOT / "overopt" / "__main__.py").read_text()


def test_entry_exits_with_mains_code_and_flushed_output(tmp_path):
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    probe = (
        "import atexit, sys; from overopt.cli import entry;"
        " atexit.register(lambda: print('teardown ran', file=sys.stderr)); entry()"
    )
    bad = subprocess.run(
        [sys.executable, "-c", probe, "fit", str(tmp_path / "missing.csv")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.startswith("overopt: error: ") and "teardown ran" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    ok = subprocess.run([sys.executable, "-m", "overopt", "--help"], capture_output=True, text=True, env=env,
                        cwd=tmp_path, timeout=120)  # fmt: skip
    assert ok.returncode == 0 and "usage" in ok.stdout and ok.stdout.endswith("\n")

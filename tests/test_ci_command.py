"""`.ci/run` runs the README's test command (the last step of the README's second command)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    commands = [line for line in blocks[0].splitlines() if line and not line.startswith("#")]
    readme = commands[1].split(" && ")[-1]
    assert readme.startswith("python -m pytest ") and "--durations=" in readme
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci[-1] == readme

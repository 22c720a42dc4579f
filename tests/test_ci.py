"""CI entry point: lint and type-check run before exactly the README's test command."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_test_command() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("Run the tests:", 1)[1]
    return re.search(r"```bash\n(.+?)\n```", section, re.S).group(1).strip()


def test_ci_runs_ruff_and_mypy_before_the_readme_test_command() -> None:
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    command = _readme_test_command()
    assert command.endswith(".venv/bin/python -m pytest")
    lines = [line.strip() for line in script.splitlines()]
    assert command in lines, "the README's test command must stand in .ci/run verbatim"
    tests_at = lines.index(command)
    ruff_at = lines.index(".venv/bin/ruff check .")
    mypy_at = lines.index(".venv/bin/mypy hsimap cli")
    assert ruff_at < tests_at and mypy_at < tests_at
    assert "set -euo pipefail" in lines  # a lint or type error stops CI

"""The README opens with the two set-up commands, and CI runs the second one as written."""

import re

from .conftest import ROOT


def setup_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```sh\n(.+?)\n```", text, flags=re.S)[:2]


def test_readme_opens_with_two_commands():
    main_job, tests = setup_commands()
    assert main_job.startswith("scripts/bootstrap && ") and "coffers-provision" in main_job
    assert tests.startswith("scripts/bootstrap && ") and "pytest" in tests
    assert "\n" not in main_job and "\n" not in tests


def test_ci_runs_the_readme_test_command():
    ci_lines = [ln for ln in (ROOT / ".ci" / "run").read_text().splitlines() if ln and not ln.startswith(("#", "set ", "cd ", "export "))]
    assert ci_lines[-1] == setup_commands()[1]

"""The README's two commands: `.ci/run` runs the second verbatim; the first's demo works."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands():
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text())


def test_readme_opens_with_two_commands_and_ci_runs_the_second():
    commands = _readme_commands()
    assert len(commands) >= 2
    install_and_demo, tests = commands[0], commands[1]
    assert "pip install ." in install_and_demo and install_and_demo.endswith("valuate demo")
    assert tests in (ROOT / ".ci" / "run").read_text()


def test_demo_writes_a_values_table(tmp_path):
    script = Path(sys.executable).with_name("valuate")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "valuate"]
    out = tmp_path / "values.csv"
    proc = subprocess.run(cmd + ["demo", "--out", str(out)], capture_output=True, text=True, check=False,
                          cwd=tmp_path, timeout=600, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 0, proc.stderr
    assert "F1" in proc.stdout and "harmful" in proc.stdout
    table = pd.read_csv(out)
    assert {"id", "value", "stderr", "count", "rank"} <= set(table.columns)
    assert len(table) == 398 and table["id"].is_unique
    assert table["value"].std() > 0
    assert (tmp_path / "values.csv.json").exists()

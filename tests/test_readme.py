"""The README's library example runs as written, and its set-up commands are what CI runs."""
from __future__ import annotations

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme() -> str:
    with open(os.path.join(ROOT, "README.md")) as f:
        return f.read()


def test_library_example_runs(tmp_path, monkeypatch):
    (block,) = re.findall(r"```python\n(.*?)```", readme(), re.S)
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {})
    assert (tmp_path / "alexnet_small.nolrn.onnx").stat().st_size > 0


def test_ci_runs_the_readme_test_command():
    command = 'pip install -e ".[test]" && python -m pytest -q'
    assert command in readme()
    with open(os.path.join(ROOT, ".ci", "run")) as f:
        assert command in f.read()

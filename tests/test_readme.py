"""The README's Python example runs as written and reports sensible numbers."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(monkeypatch):
    monkeypatch.setenv("ADVML_PROGRESS", "0")
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "the README lost its Python example"
    namespace: dict = {}
    exec(compile(blocks[0], str(README), "exec"), namespace)
    report = namespace["report"]
    assert report.clean_accuracy > 0.9
    robust = report.robust_accuracy
    assert robust[0.1] <= robust[0.05] <= report.clean_accuracy

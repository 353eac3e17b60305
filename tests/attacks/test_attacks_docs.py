"""The example in docs/attacks.md runs and says what it claims."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "attacks.md"


def test_docs_example_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert blocks, "docs/attacks.md has no python example"
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), {})
    out = capsys.readouterr().out
    assert "robust accuracy under PGD" in out and "targets reached" in out


def test_docs_table_lists_every_attack():
    from advml import attacks

    text = DOC.read_text()
    for name in attacks.names():
        assert f"| `{name}` |" in text, name

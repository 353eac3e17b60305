"""docs/models.md stays true: its table, its example code and its example card."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from advml.models import build, count_parameters, names

DOC = Path(__file__).resolve().parents[2] / "docs" / "models.md"


@pytest.fixture(scope="module")
def text() -> str:
    return DOC.read_text(encoding="utf-8")


def _table_rows(text: str) -> dict[str, list[str]]:
    rows = {}
    for line in text.splitlines():
        match = re.match(r"^\| `([a-z0-9-]+)` \|(.*)\|$", line)
        if match:
            rows[match.group(1)] = [cell.strip() for cell in match.group(2).split("|")]
    return rows


def test_table_lists_every_builtin_with_its_mnist_parameter_count(text):
    rows = _table_rows(text)
    builtins = [n for n in names() if n in rows]
    assert builtins == [
        "linear",
        "mlp",
        "cnn-small",
        "lenet",
        "madry-mnist",
        "wong-mnist",
        "resnet-lite",
    ]
    for name in builtins:
        documented = int(rows[name][-1].replace(",", ""))
        assert documented == count_parameters(build(name, (1, 28, 28), 10)), name


def test_python_examples_run(text, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    runnable = [b for b in blocks if "@register" not in b]
    assert runnable
    for block in runnable:
        exec(compile(block, str(DOC), "exec"), {"__name__": "docs_example"})


def test_example_card_matches_a_real_one(text, tmp_path):
    from advml.models import read_card, save

    example = json.loads(re.search(r"```json\n(.*?)```", text, flags=re.S).group(1))
    model = build("cnn-small", (1, 28, 28), 10, mean=0.1307, std=0.3081)
    card = read_card(save(model, tmp_path / "cnn.safetensors", {"dataset": "mnist", "seed": 0}))
    assert list(example) == list(card)
    for key in ("created", "advml_version", "torch_version"):
        example.pop(key), card.pop(key)
    example["weights"].pop("sha256"), card["weights"].pop("sha256")
    assert example == card

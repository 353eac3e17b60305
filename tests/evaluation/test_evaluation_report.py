"""The report: terminal table, results.json, Markdown, and a self-contained HTML page that a
real headless browser renders (chromium, when installed)."""

from __future__ import annotations

import base64
import functools
import json
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser

import pytest
from evaluation_threads import one_thread
from evaluation_traps import Scaled

from advml import attacks
from advml.evaluation import evaluate
from advml.evaluation.report import example_indices, format_flags, format_table, write_report

EPS = [0.05, 0.1, 0.15]
ATTACKS = [functools.partial(attacks.pgd, steps=10), functools.partial(attacks.apgd_t, steps=10)]


@pytest.fixture(scope="module")
def scaled_report(digits_model, digits):
    """A report with a critical flag: logits scaled by 1e4 (CE saturates)."""
    x, y = digits[0][:80], digits[1][:80]
    with one_thread():
        return evaluate(Scaled(digits_model), x, y, eps=EPS, attacks=ATTACKS, progress=False)


@pytest.fixture(scope="module")
def written(tmp_path_factory, scaled_report, digits_model):
    folder = tmp_path_factory.mktemp("report")
    with one_thread():
        paths = write_report(
            scaled_report,
            folder,
            model=Scaled(digits_model),
            title="Robustness of a <scaled> MLP & friends",
            meta={"model": "mlp ×1e4", "dataset": "digits (test, first 80)"},
            class_names=[f"digit {k}" for k in range(10)],
        )
    return folder, paths


class _Refs(HTMLParser):
    """Every URL-bearing attribute and every tag."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        for name, value in attrs:
            if name in ("src", "href", "srcset", "poster", "data", "action", "background"):
                self.urls.append(value or "")


def test_files_written(written):
    folder, paths = written
    for name in ("results.json", "report.md", "report.html", "robustness.png", "examples.png"):
        assert (folder / name).is_file(), name
    assert paths["html"] == folder / "report.html"
    for png in ("robustness.png", "examples.png"):
        assert (folder / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_results_json(written, scaled_report):
    data = json.loads((written[0] / "results.json").read_text())
    assert data["model"] == "mlp ×1e4"
    assert data["robust_accuracy"] == {str(k): v for k, v in scaled_report.robust_accuracy.items()}
    assert [f["name"] for f in data["flags"]] == [f.name for f in scaled_report.flags]
    assert "saturated_cross_entropy" in {f["name"] for f in data["flags"]}
    assert len(data["samples"]) == 80
    assert set(data["per_attack"]) == {str(e) for e in EPS}


def test_html_is_self_contained(written, scaled_report):
    page = (written[0] / "report.html").read_text()
    parser = _Refs()
    parser.feed(page)
    assert parser.urls, "the images must be inline"
    for url in parser.urls:
        assert url.startswith("data:image/png;base64,"), url[:60]
        base64.b64decode(url.split(",", 1)[1], validate=True)
    assert "script" not in parser.tags and "link" not in parser.tags and "iframe" not in parser.tags
    assert not re.search(r"url\(|@import|https?://", page)
    # the content: curve, per-attack table, diagnostics, examples, escaped title
    assert "&lt;scaled&gt; MLP &amp; friends" in page
    assert len(parser.urls) == 2  # curve and examples
    for anchor in ('id="summary"', 'id="per-attack"', 'id="flags"', "saturated_cross_entropy"):
        assert anchor in page
    assert "critical" in page and 'class="banner critical"' in page
    assert f"{100 * scaled_report.robust_accuracy[0.15]:.2f} %" in page


def test_markdown(written, scaled_report):
    text = (written[0] / "report.md").read_text()
    assert text.startswith("# Robustness of a <scaled> MLP")
    assert "![robust accuracy vs ε](robustness.png)" in text
    assert "![adversarial examples](examples.png)" in text
    assert "`saturated_cross_entropy`" in text and "critical diagnostic" in text


def test_terminal_table_and_flags(scaled_report):
    table = format_table(scaled_report)
    lines = table.splitlines()
    assert "apgd-t" in lines[0] and "fgsm-check" in lines[0] and "robust" in lines[0]
    assert len(lines) == 3 + len(EPS)
    assert f"{100 * scaled_report.robust_accuracy[0.1]:.2f} %" in lines[4]
    assert "saturated_cross_entropy" in format_flags(scaled_report)


def test_example_selection_prefers_distinct_classes(scaled_report):
    eps, index = example_indices(scaled_report, 4)
    assert eps == EPS[0] and index.numel() == 4
    assert (scaled_report.breaker[eps][index] >= 0).all()
    labels = scaled_report.y[index].tolist()
    assert len(set(labels)) == len(labels)


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.mark.skipif(_chromium() is None, reason="chromium not installed (apt-get install chromium)")
def test_headless_browser_renders_report(written, scaled_report, tmp_path):
    from PIL import Image

    html_path = written[0] / "report.html"
    with tempfile.TemporaryDirectory() as profile:
        base = [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
        dom = subprocess.run(
            [*base, "--dump-dom", html_path.as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert dom.returncode == 0, dom.stderr[-2000:]
        shot = tmp_path / "report.png"
        done = subprocess.run(
            [*base, f"--screenshot={shot}", "--window-size=1200,1800", html_path.as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]
    text = dom.stdout
    assert 'id="robust-accuracy"' in text and 'id="flags"' in text
    assert "saturated_cross_entropy" in text
    assert f"{100 * scaled_report.robust_accuracy[0.15]:.2f} %" in text
    image = Image.open(shot).convert("RGB")
    assert image.size == (1200, 1800)
    # not blank: several distinct colours (text, the red banner, the figure)
    colours = image.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50
    assert any(r > 150 and g < 120 and b < 120 for _, (r, g, b) in colours)  # the red badge


def test_l2_on_vectors_without_example_figure(tmp_path):
    """Non-image inputs (N, D): the L2 cascade with its FGM check, a report without the
    examples figure."""
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 32), nn.Tanh(), nn.Linear(32, 4)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 2)
    x = torch.rand(40, 6, generator=gen)
    y = model(x).argmax(1)
    report = evaluate(
        model,
        x,
        y,
        threat="l2",
        eps=[0.1, 0.3],
        attacks=ATTACKS[:1],
        adaptive=False,
        progress=False,
    )
    assert report.attacks == ["pgd", "fgm-check"] and report.clean_accuracy == 1.0
    assert report.unbounded["eps"] == pytest.approx(6**0.5)
    paths = write_report(report, tmp_path, model=model, title="toy")
    assert "examples" not in paths and (tmp_path / "report.html").is_file()
    page = (tmp_path / "report.html").read_text()
    assert "Adversarial examples" not in page and "L2" in page

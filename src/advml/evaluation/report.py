"""Reports of a :class:`~advml.evaluation.robust.RobustnessReport`: a terminal table, a Markdown
file and a self-contained HTML page.

:func:`write_report` writes, into one folder, ``results.json`` (the report's numbers, per attack
and per sample), ``robustness.png`` (robust accuracy against ε), ``examples.png`` (clean |
amplified perturbation | adversarial for a few broken samples, with predicted class and
confidence), ``report.md`` and ``report.html``. The HTML page inlines its images as base64 PNG
and its style sheet; it loads nothing from anywhere else and runs no script, so it can be
mailed or archived as one file.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from advml.evaluation.robust import RobustnessReport

__all__ = [
    "example_indices",
    "format_flags",
    "format_table",
    "render_html",
    "render_markdown",
    "write_report",
]

_THREAT_NAMES = {"linf": "L∞", "l2": "L2", "l1": "L1", "l0": "L0"}


def _pct(value: float) -> str:
    return f"{100 * value:.2f} %"


def _threat(report: RobustnessReport) -> str:
    return _THREAT_NAMES.get(report.threat, report.threat)


def _ensemble(report: RobustnessReport) -> str:
    main = [s.label for s in report.steps if s.role != "check"]
    checks = [s.label for s in report.steps if s.role == "check"]
    text = ", ".join(main)
    return text + (f" (and the check {', '.join(checks)})" if checks else "")


def headline(report: RobustnessReport) -> str:
    """One sentence: the robust accuracy at the largest budget and what it is a worst case of."""
    eps = report.eps[-1]
    return (
        f"Robust accuracy {_pct(report.robust_accuracy[eps])} at {_threat(report)} ε = {eps:g} "
        f"(clean {_pct(report.clean_accuracy)}), worst case per sample over "
        f"{_ensemble(report)} on {report.n} samples."
    )


def format_table(report: RobustnessReport) -> str:
    """The terminal table: accuracy (%) after each attack of the cascade, one row per ε."""
    labels = report.attacks
    width = max(9, *(len(label) + 2 for label in labels))
    header = f"{'ε':>8}" + "".join(f"{label:>{width}}" for label in labels) + f"{'robust':>10}"
    lines = [header, "-" * len(header)]
    lines.append(f"{'clean':>8}" + " " * (width * len(labels)) + f"{_cell(report.clean_accuracy)}")
    for eps in report.eps:
        cells = "".join(f"{100 * acc:>{width - 2}.2f} %" for _, acc in report.accuracy_after(eps))
        lines.append(f"{eps:>8g}{cells}{_cell(report.robust_accuracy[eps])}")
    return "\n".join(lines)


def _cell(value: float) -> str:
    return f"{100 * value:>8.2f} %"


def format_flags(report: RobustnessReport) -> str:
    """The diagnostics, one per line, most severe first."""
    if not report.flags:
        return "diagnostics: no flag raised"
    lines = [f"diagnostics: {len(report.flags)} flag(s)"]
    return "\n".join(lines + [f"  {flag}" for flag in report.flags])


# ------------------------------------------------------------------------------------------
# figures


def example_indices(report: RobustnessReport, k: int = 4) -> tuple[float | None, torch.Tensor]:
    """``(eps, indices)`` of up to ``k`` samples to show: broken at the smallest budget where
    at least ``k`` were broken (else where most were); different true classes first."""
    chosen: tuple[float | None, torch.Tensor] = (None, torch.zeros(0, dtype=torch.long))
    for eps in report.eps:
        broken = (report.breaker[eps] >= 0).nonzero().flatten().cpu()
        if broken.numel() > chosen[1].numel():
            chosen = (eps, broken)
        if broken.numel() >= k:
            break
    eps, broken = chosen
    if report.y is None or broken.numel() <= k:
        return eps, broken[:k]
    labels = report.y.cpu()[broken]
    first, rest, seen = [], [], set()
    for i, label in zip(broken.tolist(), labels.tolist(), strict=True):
        (rest if label in seen else first).append(i)
        seen.add(label)
    return eps, torch.tensor((first + rest)[:k], dtype=torch.long)


def _figures(
    report: RobustnessReport,
    folder: Path,
    model: nn.Module | None,
    *,
    label: str,
    class_names: Sequence[str] | None,
    examples: int,
) -> dict[str, Path]:
    from advml.evaluation.figures import adversarial_examples_figure, robustness_curve

    out = {}
    curve = {0.0: report.clean_accuracy, **report.robust_accuracy}
    out["robustness"] = robustness_curve(
        {label: curve},
        folder / "robustness.png",
        threat=_threat(report),
        title=f"robust accuracy vs ε ({_threat(report)})",
    )
    x = report.x
    if model is None or x is None or examples <= 0 or x.ndim not in (3, 4):
        return out
    eps, index = example_indices(report, examples)
    if eps is None or index.numel() == 0:
        return out
    images = x if x.ndim == 4 else x.unsqueeze(1)
    adv = report.x_adv[eps] if x.ndim == 4 else report.x_adv[eps].unsqueeze(1)
    device = x.device
    index = index.to(device)

    class _Images(nn.Module):  # the figure passes NCHW; the model may expect (N, H, W)
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return self.inner(z if x.ndim == 4 else z.squeeze(1))

    out["examples"] = adversarial_examples_figure(
        _Images(),
        images[index],
        adv[index],
        folder / "examples.png",
        class_names=class_names,
        title=f"{_threat(report)} ε = {eps:g}",
    )
    out["examples_eps"] = eps  # type: ignore[assignment]
    return out


# ------------------------------------------------------------------------------------------
# Markdown


def _settings_rows(report: RobustnessReport, meta: Mapping[str, Any]) -> list[tuple[str, str]]:
    rows = [(str(k), str(v)) for k, v in meta.items() if v not in (None, "")]
    rows += [
        ("threat", f"{_threat(report)}, inputs in [0, 1]"),
        ("budgets", ", ".join(f"{e:g}" for e in report.eps)),
        ("preset", report.preset or "(attack list)"),
        ("attacks", "; ".join(s.describe() for s in report.steps)),
        ("samples", str(report.n)),
        ("seed", str(report.seed)),
        ("batch size", str(report.batch_size)),
        ("processes", str(report.world_size)),
        ("time", f"{report.seconds:.1f} s"),
    ]
    return rows


def render_markdown(
    report: RobustnessReport,
    *,
    title: str,
    meta: Mapping[str, Any] | None = None,
    images: Mapping[str, str] | None = None,
) -> str:
    meta, images = meta or {}, images or {}
    text = [f"# {title}", "", headline(report), ""]
    critical = [f for f in report.flags if f.severity == "critical"]
    if critical:
        text += [
            f"> **{len(critical)} critical diagnostic(s)**: this number may overstate "
            "robustness; see *Diagnostics*.",
            "",
        ]
    text += ["## Robust accuracy", "", "| ε | robust accuracy | broken | by |", "|---|---|---|---|"]
    text.append(
        f"| clean | {_pct(report.clean_accuracy)} | {int((~report.clean_correct).sum())} | |"
    )
    for eps in report.eps:
        by = ", ".join(f"{k} {v}" for k, v in report.broken_by[eps].items() if v)
        broken = int((~report.robust[eps]).sum())
        text.append(f"| {eps:g} | {_pct(report.robust_accuracy[eps])} | {broken} | {by} |")
    text.append("")
    if "robustness" in images:
        text += [f"![robust accuracy vs ε]({images['robustness']})", ""]
    text += [
        "## Per attack",
        "",
        "Cascade order; each attack sees only the samples still robust (checks see every "
        "correctly classified sample).",
        "",
        "| ε | attack | role | attacked | broken | accuracy after | seconds | queries/sample |",
        "|---|---|---|---|---|---|---|---|",
    ]
    roles = {s.label: s.role for s in report.steps}
    for eps in report.eps:
        for s in report.per_attack[eps]:
            q = f"{s.queries / s.attacked:.0f}" if s.attacked and s.queries else "—"
            text.append(
                f"| {eps:g} | {s.label} | {roles.get(s.label, '')} | {s.attacked} | {s.broken} "
                f"| {_pct(s.robust_after / max(report.n, 1))} | {s.seconds:.2f} | {q} |"
            )
    text += ["", "## Diagnostics", ""]
    if report.flags:
        text += ["| severity | flag | what was seen | what to do |", "|---|---|---|---|"]
        for f in report.flags:
            where = f" (ε = {f.eps:g})" if f.eps is not None else ""
            evidence = ", ".join(f"{k} = {_num(v)}" for k, v in f.evidence.items())
            text.append(
                f"| {f.severity} | `{f.name}`{where} | {_md(f.message)} ({evidence}) "
                f"| {_md(f.action)} |"
            )
    else:
        text.append("No diagnostic fired (" + _checks_done(report) + ").")
    if report.notes:
        text += ["", *[f"- {note}" for note in report.notes]]
    text.append("")
    if "examples" in images:
        text += [
            "## Adversarial examples",
            "",
            "Clean | perturbation (amplified to the full range) | adversarial, with the "
            "model's predicted class and confidence:",
            "",
            f"![adversarial examples]({images['examples']})",
            "",
        ]
    text += ["## Settings", "", "| | |", "|---|---|"]
    text += [f"| {k} | {_md(v)} |" for k, v in _settings_rows(report, meta)]
    text.append("")
    return "\n".join(text)


def _md(value: str) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _checks_done(report: RobustnessReport) -> str:
    if report.probe is None:
        return "diagnostics were switched off"
    return (
        f"probed {report.probe.n} samples for probability outputs, randomness and zero, "
        "non-finite or exploding gradients; compared single-step and gradient-free attacks "
        "with the iterative ones"
        + (
            f"; every probed sample broken at ε = {report.unbounded['eps']:g}"
            if report.unbounded
            else ""
        )
    )


# ------------------------------------------------------------------------------------------
# HTML

_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;color:#1d232a;
background:#f6f7f9}
main{max-width:1040px;margin:0 auto;padding:24px 28px 48px;background:#fff;min-height:100vh}
h1{font-size:26px;margin:0 0 6px}h2{font-size:19px;margin:30px 0 10px;border-bottom:1px solid
#e3e6ea;padding-bottom:4px}
p.lead{font-size:16px;margin:8px 0 14px}
.big{font-size:34px;font-weight:700}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:14px 0}
.card{border:1px solid #dfe3e8;border-radius:8px;padding:10px 16px;min-width:120px}
.card .k{font-size:13px;color:#5b6672}
.banner{border-radius:8px;padding:12px 16px;margin:14px 0;font-weight:600}
.banner.critical{background:#fdecec;border:1px solid #f1a7a7;color:#8a1c1c}
.banner.ok{background:#eaf6ee;border:1px solid #a6d8b5;color:#1d5e30}
.banner.warning{background:#fff6e0;border:1px solid #f0d08a;color:#6b4d00}
table{border-collapse:collapse;width:100%;margin:8px 0 12px;font-size:14px}
th,td{border-bottom:1px solid #e6e9ed;padding:6px 8px;text-align:left;vertical-align:top}
th{background:#f1f3f5;font-weight:600}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.sev{display:inline-block;border-radius:10px;padding:1px 9px;font-size:12px;font-weight:700;
color:#fff}
.sev.critical{background:#c62828}.sev.warning{background:#d18b00}.sev.info{background:#5b6672}
code{background:#f1f3f5;border-radius:4px;padding:1px 4px;font-size:13px}
img{max-width:100%;height:auto;border:1px solid #e6e9ed;border-radius:6px}
.muted{color:#5b6672;font-size:13px}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def render_html(
    report: RobustnessReport,
    *,
    title: str,
    meta: Mapping[str, Any] | None = None,
    images: Mapping[str, bytes] | None = None,
    examples_eps: float | None = None,
) -> str:
    """The report as one self-contained HTML page (inline CSS, base64 PNG images, no script)."""
    meta, images = meta or {}, images or {}
    eps_max = report.eps[-1]
    critical = [f for f in report.flags if f.severity == "critical"]
    warnings = [f for f in report.flags if f.severity == "warning"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="lead">{_e(headline(report))}</p>',
        '<div class="cards">',
        f'<div class="card"><div class="k">clean accuracy</div><div class="big">'
        f"{_e(_pct(report.clean_accuracy))}</div></div>",
        f'<div class="card"><div class="k">robust accuracy, ε = {eps_max:g}</div>'
        f'<div class="big" id="robust-accuracy">{_e(_pct(report.robust_accuracy[eps_max]))}'
        "</div></div>",
        f'<div class="card"><div class="k">samples</div><div class="big">{report.n}</div></div>',
        f'<div class="card"><div class="k">diagnostics</div><div class="big">'
        f"{len(report.flags)}</div></div>",
        "</div>",
    ]
    if critical:
        parts.append(
            f'<div class="banner critical" id="verdict">{len(critical)} critical '
            "diagnostic(s): the robust accuracy above may overstate the model's robustness. "
            "See Diagnostics below for what was seen and what to do.</div>"
        )
    elif warnings:
        parts.append(
            f'<div class="banner warning" id="verdict">{len(warnings)} warning(s); no critical '
            "diagnostic. See Diagnostics below.</div>"
        )
    else:
        parts.append(
            '<div class="banner ok" id="verdict">No diagnostic fired: no sign that the '
            "attacks under-estimate the worst case.</div>"
        )

    parts += [
        "<h2>Robust accuracy</h2>",
        '<table id="summary"><thead><tr><th>ε</th><th class="n">robust accuracy</th>'
        '<th class="n">broken</th><th>broken by</th></tr></thead><tbody>',
        f'<tr><td>clean</td><td class="n">{_e(_pct(report.clean_accuracy))}</td>'
        f'<td class="n">{int((~report.clean_correct).sum())}</td><td class="muted">'
        "misclassified without attack</td></tr>",
    ]
    for eps in report.eps:
        by = ", ".join(f"{k}: {v}" for k, v in report.broken_by[eps].items() if v)
        parts.append(
            f'<tr><td>{eps:g}</td><td class="n">{_e(_pct(report.robust_accuracy[eps]))}</td>'
            f'<td class="n">{int((~report.robust[eps]).sum())}</td><td>{_e(by)}</td></tr>'
        )
    parts.append("</tbody></table>")
    if "robustness" in images:
        parts.append(_img(images["robustness"], "robust accuracy against epsilon"))

    parts += [
        "<h2>Per attack</h2>",
        '<p class="muted">Cascade order: each attack sees only the samples still robust, '
        "so a sample counts as robust only if every attack failed on it. Checks run on every "
        "correctly classified sample.</p>",
        '<table id="per-attack"><thead><tr><th>ε</th><th>attack</th><th>role</th>'
        '<th class="n">attacked</th><th class="n">broken</th><th class="n">accuracy after</th>'
        '<th class="n">seconds</th><th class="n">queries / sample</th></tr></thead><tbody>',
    ]
    steps = {s.label: s for s in report.steps}
    for eps in report.eps:
        for s in report.per_attack[eps]:
            item = steps.get(s.label)
            role = item.role if item else ""
            tip = f' title="{_e(item.reason)}"' if item and item.reason else ""
            q = f"{s.queries / s.attacked:.0f}" if s.attacked and s.queries else "—"
            parts.append(
                f"<tr><td>{eps:g}</td><td><code>{_e(item.describe() if item else s.label)}"
                f"</code></td><td{tip}>{_e(role)}</td><td class='n'>{s.attacked}</td>"
                f"<td class='n'>{s.broken}</td>"
                f"<td class='n'>{_e(_pct(s.robust_after / max(report.n, 1)))}</td>"
                f"<td class='n'>{s.seconds:.2f}</td><td class='n'>{q}</td></tr>"
            )
    parts.append("</tbody></table>")

    parts.append('<h2 id="diagnostics">Diagnostics</h2>')
    if report.flags:
        parts.append(
            '<table id="flags"><thead><tr><th>severity</th><th>flag</th><th>what was seen</th>'
            "<th>evidence</th><th>what to do</th></tr></thead><tbody>"
        )
        for f in report.flags:
            where = f"<br><span class='muted'>ε = {f.eps:g}</span>" if f.eps is not None else ""
            evidence = "<br>".join(f"{_e(k)} = {_e(_num(v))}" for k, v in f.evidence.items())
            parts.append(
                f'<tr class="flag {_e(f.severity)}"><td><span class="sev {_e(f.severity)}">'
                f"{_e(f.severity)}</span></td><td><code>{_e(f.name)}</code>{where}</td>"
                f"<td>{_e(f.message)}</td><td class='muted'>{evidence}</td>"
                f"<td>{_e(f.action)}</td></tr>"
            )
        parts.append("</tbody></table>")
    else:
        parts.append(f"<p>No diagnostic fired ({_e(_checks_done(report))}).</p>")
    if report.notes:
        parts.append("<ul>" + "".join(f"<li>{_e(n)}</li>" for n in report.notes) + "</ul>")

    if "examples" in images:
        where = f" at ε = {examples_eps:g}" if examples_eps is not None else ""
        parts += [
            "<h2>Adversarial examples</h2>",
            f'<p class="muted">Clean input | perturbation (amplified to the full range) | '
            f"adversarial input{_e(where)}, each with the model's predicted class and "
            "confidence.</p>",
            _img(images["examples"], "clean, perturbation and adversarial examples"),
        ]

    parts += ["<h2>Settings</h2>", '<table id="settings"><tbody>']
    parts += [f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in _settings_rows(report, meta)]
    parts += [
        "</tbody></table>",
        '<p class="muted">Written by advml. Exact numbers, per attack and per sample: '
        "results.json beside this file.</p>",
        "</main></body></html>",
    ]
    return "\n".join(parts)


# ------------------------------------------------------------------------------------------


def write_report(
    report: RobustnessReport,
    folder: str | Path,
    *,
    model: nn.Module | None = None,
    title: str = "advml robustness report",
    meta: Mapping[str, Any] | None = None,
    class_names: Sequence[str] | None = None,
    examples: int = 4,
    label: str = "model",
    results: bool = True,
) -> dict[str, Path]:
    """Write ``results.json`` (unless ``results=False``), the figures, ``report.md`` and
    ``report.html`` into ``folder``; returns the paths by name."""
    from advml.runs import atomic_write_bytes, atomic_write_json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    figures = _figures(
        report, folder, model, label=label, class_names=class_names, examples=examples
    )
    examples_eps = figures.pop("examples_eps", None)
    paths: dict[str, Path] = dict(figures)
    if results:
        atomic_write_json(folder / "results.json", {**dict(meta or {}), **report.to_dict()})
        paths["results"] = folder / "results.json"
    markdown = render_markdown(
        report, title=title, meta=meta, images={k: v.name for k, v in figures.items()}
    )
    atomic_write_bytes(folder / "report.md", markdown.encode())
    page = render_html(
        report,
        title=title,
        meta=meta,
        images={k: v.read_bytes() for k, v in figures.items()},
        examples_eps=examples_eps,  # type: ignore[arg-type]
    )
    atomic_write_bytes(folder / "report.html", page.encode())
    paths["markdown"] = folder / "report.md"
    paths["html"] = folder / "report.html"
    return paths


def summary_json(report: RobustnessReport) -> str:
    """The headline numbers as compact JSON (for logs)."""
    return json.dumps(
        {
            "clean_accuracy": report.clean_accuracy,
            "robust_accuracy": {str(k): v for k, v in report.robust_accuracy.items()},
            "flags": [f.name for f in report.flags],
        }
    )

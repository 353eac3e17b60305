"""The VNN-COMP ACAS Xu benchmark: advml's complete verifier on the 186 instances.

Each row of ``acasxu_instances.csv`` (``onnx_file,vnnlib_file,timeout_s``) is one instance:
a network of Katz et al. (2017) and a Reluplex property φ1–φ10 in VNN-LIB (the file encodes the
unsafe region: ``sat`` means the property is violated). For every instance the script runs
:func:`advml.verification.bab.verify` with the instance's timeout (116 s) and records the
answer and the wall time, the way VNN-COMP's ``run_instance`` is timed (network and property
read inside the clock).

Every ``sat`` answer is re-checked independently: the counterexample is evaluated by the
*NNet* file of the same network (a separate file and reader, float64) and must lie in the
property's input box and unsafe region. ``--expected FILE`` (CSV ``onnx_file,vnnlib_file,
answer``) compares the answers with another tool's; a mismatch counts as wrong.

Published (VNN-COMP 2021, ACAS Xu, 186 instances): nnenum 186 solved, 285 s total, median
1.2 s; Marabou 184, 410 s; α,β-CROWN 186, 2,077 s (``../shared/REFERENCES.md``).

Run from the repository root (about an hour on 2 CPU cores; ``--limit``/``--only`` for less)::

    ADVML_DATA=/work/shared/data .venv/bin/python benchmarks/acasxu.py --out runs/bench/acasxu.json
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common

from advml.verification.bab import verify
from advml.verification.nnet import read_nnet
from advml.verification.onnx_import import read_onnx
from advml.verification.vnnlib import read_vnnlib

PUBLISHED = [
    ("nnenum (VNN-COMP 2021)", 186, 285.0, 1.2),
    ("Marabou (VNN-COMP 2021)", 184, 410.0, 0.87),
    ("α,β-CROWN (VNN-COMP 2021)", 186, 2077.0, 7.2),
]


def data_folder(arg: str | None) -> Path:
    root = arg or os.environ.get("ADVML_DATA")
    if not root:
        raise SystemExit("give --data-dir or set ADVML_DATA to the shared data folder")
    folder = Path(root) / "acasxu"
    if not (folder / "acasxu_instances.csv").is_file():
        raise SystemExit(f"{folder}/acasxu_instances.csv not found")
    return folder


def instances(folder: Path) -> list[tuple[str, str, float]]:
    with open(folder / "acasxu_instances.csv", newline="") as handle:
        return [(row[0], row[1], float(row[2])) for row in csv.reader(handle) if row]


def recheck(folder: Path, onnx_file: str, properties, x: torch.Tensor) -> bool:
    """Does ``x`` violate a property on the NNet version of the network (float64)?"""
    nnet = folder / "nnet" / onnx_file.replace(".onnx", ".nnet")
    network = read_nnet(nnet, normalize=False).to(torch.float64)
    x = x.reshape(1, -1).to(torch.float64)
    y = network(x)
    return any(bool(p.violated_by(x, y)[0]) for p in properties)


def load_expected(path: str | None) -> dict[tuple[str, str], str]:
    if not path:
        return {}
    with open(path, newline="") as handle:
        return {(r[0], r[1]): r[2].strip() for r in csv.reader(handle) if len(r) >= 3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None, help="shared data folder ($ADVML_DATA)")
    parser.add_argument("--out", default="runs/bench/acasxu.json")
    parser.add_argument("--timeout", type=float, default=None, help="override the 116 s")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--limit", type=int, default=None, help="first N instances only")
    parser.add_argument("--only", default=None, help="comma list of props, e.g. 1,2")
    parser.add_argument("--expected", default=None, help="CSV onnx,vnnlib,answer to compare")
    parser.add_argument("--method", default="auto")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    folder = data_folder(args.data_dir)
    rows = instances(folder)
    if args.only:
        keep = {f"prop_{p.strip()}.vnnlib" for p in args.only.split(",")}
        rows = [r for r in rows if r[1] in keep]
    if args.limit:
        rows = rows[: args.limit]
    expected = load_expected(args.expected)
    info = common.machine()
    print(f"# ACAS Xu, {len(rows)} instances: {common.describe_machine(info)}", flush=True)

    records = []
    for index, (onnx_file, vnnlib_file, timeout) in enumerate(rows):
        timeout = args.timeout or timeout
        started = time.perf_counter()
        network = read_onnx(folder / "onnx" / onnx_file)
        properties = read_vnnlib(folder / "vnnlib" / vnnlib_file, 5, 5)
        result = verify(network, properties, timeout=timeout, method=args.method)
        seconds = time.perf_counter() - started
        answer = result.vnncomp
        record = {
            "onnx": onnx_file,
            "vnnlib": vnnlib_file,
            "answer": answer,
            "seconds": seconds,
            "reason": result.reason,
            "stats": result.stats,
        }
        if result.counterexample is not None:
            record["counterexample_checked"] = recheck(
                folder, onnx_file, properties, result.counterexample[0]
            )
        want = expected.get((onnx_file, vnnlib_file))
        record["wrong"] = bool(
            (answer == "sat" and not record.get("counterexample_checked", False))
            or (want in ("sat", "unsat") and answer in ("sat", "unsat") and want != answer)
        )
        records.append(record)
        flag = "  WRONG" if record["wrong"] else ""
        print(
            f"{index + 1:3d}/{len(rows)} {onnx_file:36s} {vnnlib_file:14s} "
            f"{answer:8s} {seconds:7.2f} s{flag}",
            flush=True,
        )

    solved = [r for r in records if r["answer"] in ("sat", "unsat")]
    times = [r["seconds"] for r in records]
    total = sum(times)
    summary = {
        "instances": len(records),
        "solved": len(solved),
        "sat": sum(r["answer"] == "sat" for r in records),
        "unsat": sum(r["answer"] == "unsat" for r in records),
        "timeout_or_unknown": len(records) - len(solved),
        "wrong": sum(r["wrong"] for r in records),
        "total_seconds": total,
        "median_seconds": statistics.median(times) if times else None,
        "max_seconds": max(times) if times else None,
    }
    info["load_average_end"] = [round(v, 2) for v in common.load_average()]
    table = [
        (
            "advml (this run)",
            f"{summary['solved']} / {summary['instances']}",
            f"{total:,.0f} s",
            f"{summary['median_seconds']:.2f} s" if times else "—",
            summary["wrong"],
        )
    ]
    table += [(name, f"{n} / 186", f"{t:,.0f} s", f"{m} s", "—") for name, n, t, m in PUBLISHED]
    print()
    print(common.markdown_table(["tool", "solved", "total time", "median", "wrong"], table))
    print(
        f"\nsat {summary['sat']}, unsat {summary['unsat']}, timeout/unknown "
        f"{summary['timeout_or_unknown']}, slowest {summary['max_seconds'] or 0:.1f} s; "
        f"every sat re-checked on the NNet network: "
        f"{all(r.get('counterexample_checked', True) for r in records)}"
    )
    common.write_json(args.out, {"machine": info, "summary": summary, "instances": records})


if __name__ == "__main__":
    main()

"""``advml verify``: decide a VNN-LIB property of an ONNX or NNet network, like VNN-COMP's
``run_instance``: prints ``unsat`` (the property holds), ``sat`` (a counterexample, checked by a
forward pass, is written with ``--out``) or ``timeout``/``unknown`` (with the reason on stderr).
"""

from __future__ import annotations

import argparse
import sys
import time

from advml.cli.common import positive_int


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"the timeout must be > 0 seconds, got {text!r}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "verify",
        help="verify a VNN-LIB property of an ONNX/NNet network (complete branch-and-bound)",
        description="Decide whether any input in the VNN-LIB file's box reaches its unsafe "
        "output region. Prints unsat (verified), sat (falsified; the counterexample is "
        "written with --out) or timeout/unknown, like VNN-COMP's run_instance.",
    )
    network = parser.add_mutually_exclusive_group(required=True)
    network.add_argument("--onnx", help="network as an ONNX file")
    network.add_argument(
        "--nnet",
        help="network as an NNet file (read without its input/output normalization, as "
        "VNN-COMP's ACAS Xu ONNX files and properties expect)",
    )
    parser.add_argument("--vnnlib", required=True, help="property as a VNN-LIB file")
    parser.add_argument("--timeout", type=_seconds, default=116.0, help="seconds (default 116)")
    parser.add_argument(
        "--method",
        default="auto",
        choices=("auto", "input-split", "relu-split", "milp", "crown", "alpha-crown", "ibp"),
        help="auto: input splitting for <= 10 inputs, ReLU splitting otherwise; crown, "
        "alpha-crown and ibp are incomplete (unsat or unknown)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", help="result file: the answer, and for sat the counterexample (VNN-COMP)"
    )
    parser.add_argument("--progress", action="store_true", help="show a progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from advml.verification.bab import verify
    from advml.verification.network import UnsupportedOperator
    from advml.verification.result import VerificationResult
    from advml.verification.vnnlib import read_vnnlib, write_result

    started = time.perf_counter()
    try:
        if args.onnx:
            from advml.verification.onnx_import import read_onnx

            network = read_onnx(args.onnx)
        else:
            from advml.verification.nnet import read_nnet

            network = read_nnet(args.nnet, normalize=False)
    except UnsupportedOperator as error:
        result = VerificationResult("unknown", reason=str(error))
    else:
        properties = read_vnnlib(args.vnnlib, network.n_inputs, network.n_outputs)
        remaining = args.timeout - (time.perf_counter() - started)
        if remaining <= 0:
            result = VerificationResult("unknown", reason="timeout")
        else:
            result = verify(
                network,
                properties,
                timeout=remaining,
                method=args.method,
                batch_size=args.batch_size,
                seed=args.seed,
                progress=args.progress,
            )
    if args.out:
        write_result(args.out, result)
    print(result.vnncomp)
    seconds = time.perf_counter() - started
    detail = f" ({result.reason})" if result.reason else ""
    print(f"{result.status}{detail} in {seconds:.2f} s", file=sys.stderr)
    return 0

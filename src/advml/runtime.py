"""Process-level runtime: device choice, seeding, torch.distributed under ``torchrun``, versions.

Distributed runs are started by ``torchrun`` (never by an advml launcher).
:func:`distributed_context`
reads the environment ``torchrun`` sets (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``), initialises
the process group (gloo on CPU, NCCL on CUDA) and tears it down afterwards.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

from advml.errors import UserError


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in a (possibly single-process) job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def dist_info() -> DistInfo:
    """The current process's rank and world size (1 process when not under ``torchrun``)."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(
            dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0))
        )
    return DistInfo(
        int(os.environ.get("RANK", 0)),
        int(os.environ.get("WORLD_SIZE", 1)),
        int(os.environ.get("LOCAL_RANK", 0)),
    )


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks this rank's CUDA device when there is one, else the CPU."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", dist_info().local_rank % torch.cuda.device_count())
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise UserError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {device!r} requested but CUDA is not available; use --device cpu")
    return resolved


@contextlib.contextmanager
def distributed_context(device: torch.device) -> Iterator[DistInfo]:
    """Initialise torch.distributed when started under ``torchrun`` with WORLD_SIZE > 1.

    Uses NCCL for CUDA devices and gloo otherwise; destroys the group on exit only if this
    context created it.
    """
    info = dist_info()
    created = False
    if info.distributed and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
        created = True
        if device.type == "cpu":
            # Processes share the machine's cores: one thread each avoids oversubscription.
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // info.world_size))
    try:
        yield dist_info()
    finally:
        if created:
            dist.destroy_process_group()


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed derived from ``parts`` (stable across processes and Python versions)."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed``."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def versions() -> dict[str, str]:
    """Versions recorded in every run's ``config.json``."""
    import numpy

    from advml import __version__

    return {
        "advml": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cuda": torch.version.cuda or "none",
    }

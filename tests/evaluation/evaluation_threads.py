"""A context manager shared by the evaluation tests."""

import contextlib

import torch


@contextlib.contextmanager
def one_thread():
    """Tiny models run faster on one thread, and the CI machine is shared. (Module and session
    fixtures run before the autouse fixture below, so they use this themselves.)"""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)

"""Child processes that die with their parent (Linux's PR_SET_PDEATHSIG), for the worker and the stack."""

from __future__ import annotations

import ctypes
import signal
import sys

PR_SET_PDEATHSIG = 1
# Loaded before any fork: a preexec_fn should not have to dlopen anything. preexec_fn is the only way to
# set PDEATHSIG in the child; die_with_parent takes no locks, so it is safe enough with threads around.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Between fork and exec: have Linux send `sig` to this child when its parent dies (no-op elsewhere)."""
    # Note: "parent" is the thread that forked; start long-lived children from a long-lived thread.
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)

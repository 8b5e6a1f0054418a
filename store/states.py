"""Every job state, stop reason and job kind, named once: nowhere else is one written as a string.

They are `str` enums, so they compare equal to their values, go into SQL and JSON as those values, and
read back from them: `JobStatus("queued") is JobStatus.QUEUED`.
"""

from __future__ import annotations

import sys
from enum import Enum

if sys.version_info >= (3, 11):
    from enum import StrEnum
else:  # Python 3.10 has no StrEnum: the same behaviour, spelled out (str() and format() give the value)

    class StrEnum(str, Enum):
        __str__ = str.__str__
        __format__ = str.__format__


class JobStatus(StrEnum):
    """Where a job is in its life; store/lifecycle.py makes every change between them."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def ended(self) -> bool:
        """A job in this state has ended for good."""
        return self in TERMINAL


# The states a job never leaves.
TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
# The states of a job that still counts against its tenant's active limit, and can be cancelled.
ACTIVE = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})


class StopReason(StrEnum):
    """Why a reporter asks the training loop to stop before it has finished."""

    SHUTDOWN = "shutdown"  # the worker is shutting down (SIGTERM): the job is handed back
    LOST = "lost"  # the attempt lost its lease: another worker owns the job now
    CANCELLED = "cancelled"  # a client cancelled the job


class JobKind(StrEnum):
    TRAIN = "train"  # one model, trained by a worker
    ENSEMBLE = "ensemble"  # several members, each a child TRAIN job, and an ensemble built from them


class EnsembleStatus(StrEnum):
    BUILDING = "building"
    READY = "ready"
    FAILED = "failed"


class DeliveryStatus(StrEnum):
    """A webhook delivery's state (store/webhooks.py)."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"

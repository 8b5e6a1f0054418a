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
    PRUNED = "pruned"  # a sweep's trial stopped early by its pruner: worse than its peers at that epoch

    @property
    def ended(self) -> bool:
        """A job in this state has ended for good."""
        return self in TERMINAL


# The states a job never leaves.
TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.PRUNED})
# The states of a job that still counts against its tenant's active limit, and can be cancelled.
ACTIVE = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})


class StopReason(StrEnum):
    """Why a reporter asks the training loop to stop before it has finished."""

    SHUTDOWN = "shutdown"  # the worker is shutting down (SIGTERM): the job is handed back
    LOST = "lost"  # the attempt lost its lease: another worker owns the job now
    CANCELLED = "cancelled"  # a client cancelled the job
    PRUNED = "pruned"  # the job is a sweep's trial and its sweep's pruner stopped it


class JobKind(StrEnum):
    TRAIN = "train"  # one model, trained by a worker
    ENSEMBLE = "ensemble"  # several members, each a child TRAIN job, and an ensemble built from them
    TRIAL = "trial"  # one model, trained by a worker, as one point of a sweep (sweep_id)


# The kinds whose row trains one model itself (an ensemble job's row only waits for its members): these are
# claimed, heartbeat, get lost and recovered, and count against their tenant's active trainings.
TRAINING_KINDS = frozenset({JobKind.TRAIN, JobKind.TRIAL})


# A sweep's trial whose point was refused before it ran (an invalid spec, a limit): it has no job, and this
# stands in for its job's status.
REFUSED = "refused"
# A sweep's trial whose job has been deleted since (DELETE /v1/jobs/{id}, retention): it tells the sampler
# nothing more.
TRIAL_JOB_DELETED = "deleted"


class SweepStatus(StrEnum):
    """A sweep's state (store/sweeps.py): running until its last trial has ended or it is cancelled."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"  # every trial has ended and at least one succeeded
    FAILED = "failed"  # every trial has ended and none succeeded
    CANCELLED = "cancelled"


class EnsembleStatus(StrEnum):
    BUILDING = "building"
    READY = "ready"
    FAILED = "failed"


class DeliveryStatus(StrEnum):
    """A webhook delivery's state (store/webhooks.py)."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"

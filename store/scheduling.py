"""Which waiting jobs start next: fair share between tenants, priority within one, a running limit each.

Read from SQL, decided in Python: `choose` is the whole policy, and store/dispatch.py carries it out.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, aliased

from store.queue import QUEUE, queue_for
from store.states import ACTIVE, TRAINING_KINDS, JobKind, JobStatus
from store.tables import Job


@dataclass(frozen=True)
class Waiting:
    """A job that waits in SQL for its turn (queued, not yet dispatched)."""

    job_id: str
    tenant: str
    kind: JobKind
    priority: int
    created_at: datetime
    cost: int  # the trainings it starts: 1, or an ensemble job's members (as the active-jobs quota counts)
    queue: str = QUEUE  # where it goes (store.queue.queue_for): each queue's slots are counted apart
    spec: dict = field(default_factory=dict, compare=False)  # sent with it: the broker's message needs none


def waiting_jobs(session: Session) -> list[Waiting]:
    """Every waiting job, each tenant's in the order it starts them: highest priority, then oldest."""
    member = aliased(Job)
    members = select(func.count(member.id)).where(member.parent_id == Job.id).scalar_subquery()
    query = (
        select(Job.id, Job.tenant, Job.kind, Job.priority, Job.created_at, members, Job.spec)
        .where(Job.status == JobStatus.QUEUED, Job.dispatched_at.is_(None), Job.parent_id.is_(None))
        .order_by(Job.priority.desc(), Job.created_at, Job.id)
    )
    return [
        Waiting(job_id, tenant, kind, priority, created_at, max(count, 1), queue_for(spec), spec)
        for job_id, tenant, kind, priority, created_at, count, spec in session.execute(query)
    ]


def trainings_in_use(session: Session) -> defaultdict[str, Counter[str]]:
    """Per queue, per tenant, the trainings that hold a slot or will: running, or dispatched and not yet
    started."""
    holding = or_(Job.status == JobStatus.RUNNING, Job.dispatched_at.is_not(None))
    query = select(Job.tenant, Job.spec).where(
        Job.kind.in_(TRAINING_KINDS), Job.status.in_(ACTIVE), holding
    )
    in_use: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for tenant, spec in session.execute(query):
        in_use[queue_for(spec)][tenant] += 1
    return in_use


def served_longest_ago(session: Session, tenants: Collection[str]) -> dict[str, int]:
    """Of `tenants`, each one's rank by its latest dispatch, 0 for the one served longest ago; -1 for a
    tenant never served."""
    latest = func.max(Job.dispatched_at)
    query = select(Job.tenant, latest).where(Job.tenant.in_(tenants)).group_by(Job.tenant).order_by(latest)
    ranked = [tenant for tenant, moment in session.execute(query) if moment is not None]
    return {tenant: -1 for tenant in tenants} | {tenant: rank for rank, tenant in enumerate(ranked)}


def within_limit(running: int, cost: int, limit: int) -> bool:
    # A tenant with nothing running always gets its turn: an ensemble with more members than the limit
    # then runs alone rather than never.
    return limit == 0 or running == 0 or running + cost <= limit


def fits(busy: int, cost: int, capacity: int | None) -> bool:
    # Unknown capacity (no worker registered): the broker holds what is sent until a worker comes. An
    # ensemble with more members than there are slots starts once nothing else holds one.
    return capacity is None or busy + cost <= capacity or busy == 0 < capacity


def choose(
    waiting: list[Waiting],
    in_use: Counter[str],
    served: dict[str, int],
    capacity: int | None,
    limit: int,
) -> list[Waiting]:
    """The jobs to dispatch now, in order. Slot by slot, the next goes to the tenant with the fewest
    trainings in use, skipping tenants at their `limit`, and it is that tenant's first job in `waiting`
    (priority, then age). Ties go to the tenant served longest ago (`served`, as served_longest_ago ranks
    them), so that one slot alternates between tenants instead of serving one's whole queue first; then to
    the tenant whose oldest waiting job is oldest. Stops when the chosen job does not fit in the free slots,
    so that a large ensemble is not passed over forever by smaller jobs.

    `capacity`: the live workers' training slots, None when unknown; `in_use` counts against it."""
    queues: dict[str, list[Waiting]] = {}
    for job in waiting:
        queues.setdefault(job.tenant, []).append(job)
    in_use, served = Counter(in_use), dict(served)
    busy = sum(in_use.values())
    chosen = []
    while True:
        turns = [t for t, jobs in queues.items() if within_limit(in_use[t], jobs[0].cost, limit)]
        if not turns:
            return chosen
        oldest = {t: min(job.created_at for job in queues[t]) for t in turns}
        tenant = min(turns, key=lambda t: (in_use[t], served.get(t, -1), oldest[t], t))
        job = queues[tenant][0]
        if not fits(busy, job.cost, capacity):
            return chosen
        chosen.append(job)
        in_use[tenant] += job.cost
        busy += job.cost
        served[tenant] = max(served.values(), default=0) + 1
        queues[tenant].pop(0)
        if not queues[tenant]:
            del queues[tenant]

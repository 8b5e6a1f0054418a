"""Dispatch rounds on a real database and a real Redis, without worker processes: who gets the next slot
(fair share between tenants, priority within one, a running limit), and what a round guarantees."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import redis
from sqlalchemy import Engine, delete, select, update
from sqlalchemy.orm import Session

from store import dispatch, jobs, lifecycle
from store.db import make_engine
from store.migrate import upgrade
from store.queue import GPU_QUEUE, QUEUE
from store.settings import Settings
from store.states import JobKind, JobStatus
from store.tables import Job, utcnow
from tests.conftest import scratch_postgres
from tests.factories import job_spec, training
from trainyard.services import start_private_redis


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A database of this module's own: a round looks at every waiting job, other tests' included."""
    with scratch_postgres("trainyard_dispatch") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'trainyard.db'}" if request.param == "sqlite" else None
    url = url or request.getfixturevalue("postgres_url")
    upgrade(url)
    engine = make_engine(url, pool_size=2)
    with Session(engine) as session, session.begin():
        session.execute(delete(Job))
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory) -> Iterator[str]:
    """A Redis of this module's own: the stacks' workers register their slots in theirs."""
    server = start_private_redis(tmp_path_factory.mktemp("dispatch-redis"))
    yield server.url
    server.stop()


@pytest.fixture
def client(redis_url) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    yield client
    client.close()


class Scheduler:
    """A database and a Redis with dispatch rounds run against them; what the rounds send is kept."""

    def __init__(self, engine: Engine, client: redis.Redis, **settings) -> None:
        self.engine, self.client = engine, client
        self.settings = Settings(database_url="sqlite://", **settings)
        self.sent: list[str] = []

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    def workers(self, *slots: int) -> None:
        for index, count in enumerate(slots):
            dispatch.register_worker(self.client, f"host:{index}", count, ttl_s=60)

    def submit(self, tenant: str, priority: int = 0, members: int = 1, gpu: bool = False) -> str:
        spec = job_spec(
            training=training(priority=priority), ensemble={"members": members}, resources={"gpu": gpu}
        )
        with self.transaction() as session:
            return jobs.create_job(session, spec, summary={}, tenant=tenant).id

    def round(self, send: Callable[[str, JobKind, dict], None] | None = None) -> list[str]:
        sent = dispatch.dispatch(self.transaction, self.settings, self.client, send or self.send)
        return sent

    def send(self, job_id: str, kind: JobKind, spec: dict) -> None:
        self.sent.append(job_id)

    def start(self, job_id: str) -> None:
        with self.transaction() as session:
            assert lifecycle.claim(session, job_id, lease_s=60) is not None

    def end(self, job_id: str) -> None:
        with self.transaction() as session:
            ended = {"status": JobStatus.SUCCEEDED, "finished_at": utcnow()}
            session.execute(update(Job).where(Job.id == job_id).values(**ended))

    def dispatched_at(self, job_id: str):
        with self.transaction() as session:
            return session.scalar(select(Job.dispatched_at).where(Job.id == job_id))


@pytest.fixture
def scheduler(engine, client) -> Scheduler:
    return Scheduler(engine, client)


def test_the_next_free_slot_goes_to_the_tenant_running_fewest(scheduler):
    """The issue's case: tenant A queues 10 jobs, then B queues 1; B's job starts before A's third."""
    scheduler.workers(2)
    a = [scheduler.submit("a") for _ in range(10)]
    assert scheduler.round() == a[:2]  # two slots, two of A's jobs; the rest wait in SQL
    b = scheduler.submit("b")
    assert scheduler.round() == []  # no slot free
    assert scheduler.dispatched_at(b) is None and scheduler.dispatched_at(a[2]) is None
    scheduler.start(a[0])
    scheduler.end(a[0])
    assert scheduler.round() == [b]  # A runs one, B none: B's turn, though A's third is older
    scheduler.end(a[1])
    assert scheduler.round() == [a[2]]


def test_within_a_tenant_higher_priority_first_then_oldest(scheduler):
    scheduler.workers(1)
    busy = scheduler.submit("a")
    assert scheduler.round() == [busy]
    early, later, urgent = scheduler.submit("a"), scheduler.submit("a"), scheduler.submit("a", priority=10)
    low = scheduler.submit("a", priority=-5)
    assert scheduler.round() == []
    for ended, expected in [(busy, urgent), (urgent, early), (early, later), (later, low)]:
        scheduler.end(ended)
        assert scheduler.round() == [expected]


def test_a_tenant_at_its_running_limit_waits_while_another_takes_the_free_slot(engine, client):
    scheduler = Scheduler(engine, client, max_running_per_tenant=1)
    scheduler.workers(1, 1)  # two workers of one slot each
    first, second = scheduler.submit("a"), scheduler.submit("a")
    assert scheduler.round() == [first]  # a slot stays free: A is at its limit
    assert scheduler.dispatched_at(second) is None
    other = scheduler.submit("b")
    assert scheduler.round() == [other]
    scheduler.start(first)
    scheduler.end(first)
    assert scheduler.round() == [second]


def test_with_no_worker_registered_everything_within_the_limits_is_sent(engine, client):
    """An API alone sends what is submitted at once, as before there was a dispatcher."""
    open_ = Scheduler(engine, client)
    ids = [open_.submit("a") for _ in range(3)]
    assert open_.round() == ids
    limited = Scheduler(engine, client, max_running_per_tenant=2)
    more = [limited.submit("b") for _ in range(3)]
    assert limited.round() == more[:2]


def test_ties_go_to_the_tenant_whose_oldest_waiting_job_is_oldest(scheduler):
    scheduler.workers(1)
    b_old, a_new = scheduler.submit("b"), scheduler.submit("a", priority=50)
    assert scheduler.round() == [b_old]
    scheduler.end(b_old)
    c_new = scheduler.submit("c")
    assert scheduler.round() == [a_new]  # A's waiting job is older than C's
    scheduler.end(a_new)
    assert scheduler.round() == [c_new]


def test_an_ensemble_job_costs_its_members_and_takes_them_along(scheduler):
    scheduler.workers(2)
    single = scheduler.submit("a")
    ensemble = scheduler.submit("b", members=3)
    after = scheduler.submit("c")
    assert scheduler.round() == [single]  # 3 members do not fit beside it, and C waits behind B
    scheduler.end(single)
    assert scheduler.round() == [ensemble]  # more members than slots: it goes once nothing else runs
    with scheduler.transaction() as session:
        members = jobs.member_jobs(session, ensemble)
    assert all(member.dispatched_at is not None for member in members)
    for member in members:
        scheduler.end(member.id)
    assert scheduler.round() == [after]


def test_a_job_the_broker_refuses_waits_again(scheduler):
    job_id = scheduler.submit("a")

    def broker_away(job_id: str, kind: JobKind, spec: dict) -> None:
        raise ConnectionError("broker away")

    with pytest.raises(ConnectionError):
        scheduler.round(send=broker_away)
    assert scheduler.dispatched_at(job_id) is None
    assert scheduler.round() == [job_id]


def test_a_round_asked_for_while_another_runs_is_run_by_the_holder(scheduler):
    """A process that finds the lock taken leaves its request; the holder serves it before letting go."""
    first = scheduler.submit("a")
    late: list[str] = []

    def send_and_submit_meanwhile(job_id: str, kind: JobKind, spec: dict) -> None:
        scheduler.send(job_id, kind, spec)
        if not late:  # another process submits now, and its round finds the lock taken
            late.append(scheduler.submit("b"))
            assert dispatch.dispatch(scheduler.transaction, scheduler.settings, scheduler.client, print) == []

    assert scheduler.round(send=send_and_submit_meanwhile) == [first, *late]
    assert scheduler.sent == [first, *late]


def test_dispatched_jobs_that_come_back_keep_their_turn(scheduler):
    """A job handed back or recovered stays dispatched: it holds its slot and is sent again, not queued
    behind jobs that are still waiting."""
    scheduler.workers(1)
    job_id = scheduler.submit("a")
    assert scheduler.round() == [job_id]
    with scheduler.transaction() as session:
        claim = lifecycle.claim(session, job_id, lease_s=60)
        assert lifecycle.requeue(session, claim)
    waiting = scheduler.submit("b")
    assert scheduler.round() == []
    with scheduler.transaction() as session:
        assert [(id_, kind) for id_, kind, _ in lifecycle.dispatched_queued_jobs(session)] == [
            (job_id, JobKind.TRAIN)
        ]
    assert scheduler.dispatched_at(waiting) is None


def test_a_worker_slots_count_until_it_unregisters(client):
    assert dispatch.training_slots(client) == {}
    dispatch.register_worker(client, "a:1", 2, ttl_s=60)
    dispatch.register_worker(client, "b:2", 3, ttl_s=60, queues=[QUEUE, GPU_QUEUE])
    assert dispatch.training_slots(client) == {QUEUE: 5, GPU_QUEUE: 3}
    dispatch.unregister_worker(client, "a:1")
    assert dispatch.training_slots(client) == {QUEUE: 3, GPU_QUEUE: 3}


def test_one_slot_alternates_between_tenants(scheduler):
    """Both tenants run nothing whenever the slot frees: the one served longest ago goes next."""
    scheduler.workers(1)
    a = [scheduler.submit("a") for _ in range(3)]
    assert scheduler.round() == [a[0]]
    b = [scheduler.submit("b") for _ in range(2)]
    order = []
    for _ in range(4):
        scheduler.end(scheduler.sent[-1])
        order += scheduler.round()
    assert order == [b[0], a[1], b[1], a[2]]


def test_each_queue_counts_its_own_slots(scheduler):
    """A job for the GPU queue, which no live worker takes, is sent (the broker holds it until a GPU worker
    comes) and holds none of the CPU workers' slots: the CPU job after it still starts."""
    scheduler.workers(1)  # one CPU-only slot
    gpu_job = scheduler.submit("a", gpu=True)
    cpu_job = scheduler.submit("a")
    assert sorted(scheduler.round()) == sorted([gpu_job, cpu_job])
    another_cpu_job = scheduler.submit("b")
    assert scheduler.round() == []  # the CPU slot is taken
    scheduler.end(cpu_job)
    assert scheduler.round() == [another_cpu_job]

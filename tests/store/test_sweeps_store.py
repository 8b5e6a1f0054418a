"""A sweep's rows: trials added up to `parallelism`, points refused with their reason, the tenant's quota
respected, the sweep ended once its trials have, and two top-ups at once adding trials once."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from models.spec import JobSpec
from models.sweeps import SweepSpec
from store import sweeps
from store.settings import Settings
from store.states import REFUSED, JobKind, JobStatus, SweepStatus
from store.tables import Job, utcnow

BASE = {"dataset": {"name": "digits"}, "model": {"arch": "lenet5"}, "training": {"epochs": 3}}
LRS = [0.1, 0.03, 0.01, 0.003]


def request(**fields: Any) -> dict[str, Any]:
    space = {"optimizer.lr": {"choice": LRS}}
    return {"base": BASE, "space": space, "method": "grid", "parallelism": 2} | fields


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(home=tmp_path, database_url=None)


def create(session: Session, body: dict[str, Any], tenant: str = "default") -> str:
    sweep = sweeps.create_sweep(session, SweepSpec.model_validate(body), tenant)
    session.commit()
    return sweep.id


def top_up(engine, sweep_id: str, settings: Settings) -> sweeps.TopUp:
    with Session(engine) as session, session.begin():
        return sweeps.top_up(session, sweep_id, settings)


def end_trial(engine, job_id: str, status: JobStatus, val_acc: float | None = None) -> None:
    metrics = {} if val_acc is None else {"val_acc": val_acc, "val_loss": 1 - val_acc}
    with Session(engine) as session, session.begin():
        session.execute(
            update(Job).where(Job.id == job_id).values(status=status, metrics=metrics, finished_at=utcnow())
        )


def read(engine, sweep_id: str):
    with Session(engine) as session:
        sweep = sweeps.get_sweep(session, sweep_id)
        return sweep, [(t.number, t.params, sweeps.trial_status(t), t.error) for t in sweep.trials]


def test_a_grid_sweep_tries_each_point_once_with_parallelism_trials_at_a_time(engine, settings):
    with Session(engine) as session:
        sweep_id = create(session, request())
    first = top_up(engine, sweep_id, settings)
    assert len(first.created) == 2 and first.ended is None
    assert top_up(engine, sweep_id, settings).created == []  # two are active already

    done = []
    while True:
        sweep, trials = read(engine, sweep_id)
        active = [t.job_id for t in sweep.trials if t.job.status == JobStatus.QUEUED]
        if not active:
            break
        with Session(engine) as session:
            job = session.get(Job, active[0])
            assert job.kind == JobKind.TRIAL
            lr = JobSpec.model_validate(job.spec).optimizer.lr
        end_trial(engine, active[0], JobStatus.SUCCEEDED, val_acc=lr)  # the higher lr, the better here
        done.append(lr)
        topped = top_up(engine, sweep_id, settings)
    assert sorted(done) == sorted(LRS)  # every point once, no other
    assert topped.ended == SweepStatus.SUCCEEDED
    sweep, trials = read(engine, sweep_id)
    assert sweep.status == SweepStatus.SUCCEEDED and sweep.finished_at is not None
    assert [number for number, *_ in trials] == [0, 1, 2, 3]
    records = [sweeps.trial_record(t, "val_acc") for t in sweep.trials]
    assert max(records, key=lambda r: r.value).params == {"optimizer.lr": 0.1}


def test_a_refused_point_is_recorded_with_its_reason_and_the_sweep_goes_on(engine, tmp_path):
    # Dropout 1.5 is no probability, and 500 epochs are over max_epochs: each refused as a job would be.
    settings = Settings(home=tmp_path, database_url=None, max_epochs=100)
    body = request(
        space={"regularization.dropout": {"choice": [0.0, 1.5]}, "training.epochs": {"choice": [2, 500]}},
        parallelism=4,
    )
    with Session(engine) as session:
        sweep_id = create(session, body)
    topped = top_up(engine, sweep_id, settings)
    assert (len(topped.created), topped.refused) == (1, 3)
    _, trials = read(engine, sweep_id)
    refused = {str(params): error for _, params, status, error in trials if status == REFUSED}
    assert len(refused) == 3
    assert any("dropout" in error for error in refused.values())
    assert any("max_epochs" in error for error in refused.values())
    [job_id] = topped.created
    end_trial(engine, job_id, JobStatus.SUCCEEDED, val_acc=0.9)
    assert top_up(engine, sweep_id, settings).ended == SweepStatus.SUCCEEDED


def test_a_sweep_whose_trials_all_fail_ends_failed(engine, settings):
    with Session(engine) as session:
        sweep_id = create(session, request(space={"optimizer.lr": {"choice": [0.1]}}, parallelism=1))
    [job_id] = top_up(engine, sweep_id, settings).created
    end_trial(engine, job_id, JobStatus.FAILED)
    assert top_up(engine, sweep_id, settings).ended == SweepStatus.FAILED
    assert read(engine, sweep_id)[0].error == "no trial succeeded"


def test_trials_wait_for_room_under_the_tenants_active_limit(engine, tmp_path):
    settings = Settings(home=tmp_path, database_url=None, max_active_jobs=1)
    with Session(engine) as session:
        sweep_id = create(session, request(), tenant="busy-tenant")
    [job_id] = top_up(engine, sweep_id, settings).created  # parallelism 2, room for 1
    assert top_up(engine, sweep_id, settings).created == []
    end_trial(engine, job_id, JobStatus.SUCCEEDED, val_acc=0.5)
    assert len(top_up(engine, sweep_id, settings).created) == 1


def test_a_top_up_that_read_before_another_committed_adds_nothing(engine, settings):
    with Session(engine) as session:
        sweep_id = create(session, request())
    with Session(engine) as stale:
        read_early = sweeps.get_sweep(stale, sweep_id)  # at revision 0, as a concurrent top-up would have
        assert len(top_up(engine, sweep_id, settings).created) == 2  # another process, committed
        # PostgreSQL: the compare-and-set finds the revision moved. SQLite: the stale snapshot may not
        # write at all. Either way nothing is added.
        with contextlib.suppress(OperationalError):
            assert sweeps.top_up(stale, sweep_id, settings) is None
        stale.rollback()
        del read_early
    assert len(read(engine, sweep_id)[1]) == 2


def test_cancelling_a_sweep_cancels_its_queued_trials(engine, settings):
    with Session(engine) as session:
        sweep_id = create(session, request())
    created = top_up(engine, sweep_id, settings).created
    with Session(engine) as session, session.begin():
        assert sweeps.cancel_sweep(session, sweeps.get_sweep(session, sweep_id)) == []  # none running
    sweep, trials = read(engine, sweep_id)
    assert sweep.status == SweepStatus.CANCELLED
    assert [status for *_, status, _ in trials] == [JobStatus.CANCELLED] * len(created)
    assert top_up(engine, sweep_id, settings).created == []

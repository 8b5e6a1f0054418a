"""Every list route, the app in-process on SQLite and on PostgreSQL: one page shape, keyset paging that
stays stable while items are added, cursors that work only where they were made, GET /v1/runs with its
filters and sorts, and tags on jobs and runs.

No worker: jobs are submitted through the API and ended as a worker ends them (store/lifecycle.py), with
the runs a worker would record.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from models.datasets import raw_arrays
from store import ensembles, lifecycle, webhooks
from store.states import JobStatus
from store.tables import Run
from tests.conftest import scratch_postgres
from tests.factories import lenet_spec
from tests.in_process_api import InProcessApi
from trainyard.client import TrainyardClient

LAYERS = [{"type": "conv", "out_channels": 4}, {"type": "flatten"}, {"type": "linear", "out_features": 10}]
NPZ = {"content-type": "application/x-npz"}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def api(request, start_in_process_api) -> Iterator[InProcessApi]:
    """The app on a SQLite file, or on a PostgreSQL database of its own."""
    if request.param == "sqlite":
        yield start_in_process_api()
        return
    with scratch_postgres("trainyard_lists") as url:
        app = start_in_process_api(database_url=url)
        assert app.settings.sqlalchemy_url.startswith("postgresql")
        yield app
        app.stop()  # before the database is dropped (stopping it again after the module does nothing)


def finish(api: InProcessApi, job: dict[str, Any], test_accs: list[float | None]) -> list[str]:
    """End a queued job as a worker would, with one run per member (accuracies in member order); the ids
    of its runs."""
    members = [member["id"] for member in job["members"]] or [job["id"]]
    run_ids = []
    with api.app.state.resources.sessions() as session:
        for member, (job_id, test_acc) in enumerate(zip(members, test_accs, strict=True)):
            claim = lifecycle.claim(session, job_id, lease_s=60)
            run = Run(job_id=job_id, member=member, seed=member, test_acc=test_acc, weights_path="/none")
            outcome = lifecycle.Outcome(JobStatus.SUCCEEDED, runs=(run,))
            assert lifecycle.finish(session, claim, outcome, curve=[])
            session.commit()
            run_ids.append(run.id)
    return run_ids


def trained(api: InProcessApi, client: httpx.Client | None = None, accs=(0.5,), **spec: Any) -> list[str]:
    """Submit a job (lenet5 on digits unless `spec` says otherwise) and finish it; its runs' ids."""
    response = (client or api.http).post("/v1/jobs", json=lenet_spec(**spec))
    assert response.status_code == 202, response.text
    return finish(api, response.json(), list(accs))


def every_page(client: httpx.Client, path: str, limit: int = 2, between=None, **params: Any) -> list[dict]:
    """All items of a list, page by page; `between()` runs after each page."""
    items, cursor = [], None
    while True:
        response = client.get(path, params=params | {"limit": limit} | ({"cursor": cursor} if cursor else {}))
        assert response.status_code == 200, response.text
        page = response.json()
        assert set(page) == {"items", "next_cursor"} and len(page["items"]) <= limit
        items += page["items"]
        if between:
            between()
        if not (cursor := page["next_cursor"]):
            return items


def ids(items: list[dict]) -> list[str]:
    return [item["id"] for item in items]


@pytest.fixture(scope="module")
def tenant(api: InProcessApi) -> Iterator[Callable[[str], httpx.Client]]:
    """A client of tenant `name`: each test that counts what a list holds has a tenant of its own."""
    clients = []

    def new(name: str) -> httpx.Client:
        clients.append(api.client(api.new_key(name)))
        return clients[-1]

    yield new
    for client in clients:
        client.close()


def upload(client: httpx.Client, name: str) -> str:
    x, y = raw_arrays({"name": "digits"})
    archive = io.BytesIO()
    np.savez(archive, x=x[:60], y=y[:60])
    response = client.post("/v1/datasets", params={"name": name}, content=archive.getvalue(), headers=NPZ)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_every_list_route_pages_the_same_way(api, tenant):
    client = tenant("pages")
    job_ids = [client.post("/v1/jobs", json=lenet_spec(name=f"j{i}")).json()["id"] for i in range(3)]
    datasets = [upload(client, f"d{i}") for i in range(3)]
    with api.app.state.resources.sessions() as session:
        for i in range(3):
            refs = [ensembles.member_ref("x")]
            ensembles.create_ensemble(session, name=f"e{i}", method="mean_probs", refs=refs, tenant="pages")
        session.commit()
    assert set(ids(every_page(client, "/v1/jobs"))) == set(job_ids)
    assert set(ids(every_page(client, "/v1/datasets"))) == set(datasets)
    assert len(set(ids(every_page(client, "/v1/ensembles")))) == 3
    assert every_page(client, f"/v1/jobs/{job_ids[0]}/webhooks") == []  # no notify_url: no deliveries
    # Newest first everywhere but deliveries, which are listed as they happened.
    for path in ("/v1/jobs", "/v1/datasets", "/v1/ensembles"):
        listed = every_page(client, path)
        keys = [(item["created_at"], item["id"]) for item in listed]
        assert keys == sorted(keys, reverse=True), path


def test_a_jobs_deliveries_page_oldest_first(api):
    job = api.submit(lenet_spec(notify_url="http://127.0.0.1:9/hook"))
    assert api.http.post(f"/v1/jobs/{job['id']}/cancel").status_code == 202
    with api.app.state.resources.sessions() as session:
        for _ in range(2):  # more deliveries than a job makes, for pages of them
            webhooks.job_ended(session, job["id"])
        session.commit()
    listed = every_page(api.http, f"/v1/jobs/{job['id']}/webhooks")
    assert len(set(ids(listed))) == 3 and all(d["event"] == "job.cancelled" for d in listed)
    keys = [(d["created_at"], d["id"]) for d in listed]
    assert keys == sorted(keys)
    # A cursor of one job's deliveries pages no other job's.
    cursor = api.http.get(f"/v1/jobs/{job['id']}/webhooks", params={"limit": 1}).json()["next_cursor"]
    other = api.submit(lenet_spec())
    refused = api.http.get(f"/v1/jobs/{other['id']}/webhooks", params={"cursor": cursor})
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["query", "cursor"]


@pytest.mark.parametrize("sort", ["created_at", "test_acc"])
def test_runs_are_listed_exactly_once_while_more_are_added(api, tenant, sort):
    client = tenant(f"added-{sort}")
    before = [run for acc in (0.9, None, 0.3, 0.7, 0.9) for run in trained(api, client, accs=[acc])]
    added = []
    listed = every_page(
        client, "/v1/runs", sort=sort, between=lambda: added.extend(trained(api, client, accs=[0.99]))
    )
    seen = ids(listed)
    assert len(seen) == len(set(seen)) and set(before) <= set(seen)
    assert set(seen) - set(before) <= set(added)  # what was added after the first page may show, once


def test_jobs_are_listed_exactly_once_while_more_are_added(api, tenant):
    client = tenant("added-jobs")
    before = [client.post("/v1/jobs", json=lenet_spec()).json()["id"] for _ in range(5)]
    listed = every_page(client, "/v1/jobs", between=lambda: client.post("/v1/jobs", json=lenet_spec()))
    assert ids(listed) == before[::-1]  # newest first; the ones added later came before the first page


def test_runs_sort_best_first_with_unmeasured_runs_last(api, tenant):
    client = tenant("sorted")
    accs = [0.5, None, 0.9, 0.1, None, 0.7]
    for acc in accs:
        trained(api, client, accs=[acc])
    by_accuracy = every_page(client, "/v1/runs", sort="test_acc")
    assert [run["test_acc"] for run in by_accuracy] == [0.9, 0.7, 0.5, 0.1, None, None]
    newest_first = every_page(client, "/v1/runs")
    assert [run["test_acc"] for run in newest_first] == accs[::-1]


def test_run_filters_by_job_tag_dataset_and_arch(api, tenant):
    client = tenant("filtered")
    dataset_id = upload(client, "mine")
    lenet = trained(api, client, tags=["exp:1", "lenet"])
    custom = trained(api, client, model={"layers": LAYERS}, tags=["exp:1"])
    uploaded = trained(api, client, dataset={"name": "upload", "id": dataset_id}, tags=["exp:2", "lenet"])
    members = trained(api, client, accs=[0.4, 0.6], ensemble={"members": 2}, tags=["exp:2"])

    def runs(**params: Any) -> set[str]:
        return set(ids(every_page(client, "/v1/runs", **params)))

    assert runs() == set(lenet + custom + uploaded + members)
    with api.app.state.resources.sessions() as session:
        parent_id = session.get(Run, members[0]).job.parent_id
        lenet_job_id = session.get(Run, lenet[0]).job_id
    assert runs(job_id=parent_id) == set(members)  # an ensemble job's runs: its members'
    assert runs(job_id=lenet_job_id) == set(lenet)
    assert runs(tag="exp:1") == set(lenet + custom)
    assert runs(tag=["exp:2", "lenet"]) == set(uploaded)  # every tag must match
    assert runs(tag=["exp:1", "exp:2"]) == set()
    assert runs(dataset="digits") == set(lenet + custom + members)
    assert runs(dataset="upload") == runs(dataset_id=dataset_id) == set(uploaded)
    assert runs(arch="custom") == set(custom)
    assert runs(arch="lenet5", tag="exp:2") == set(uploaded + members)
    assert runs(arch="alexnet") == set()


def test_tags_show_on_jobs_and_runs_and_filter_the_job_list(api, tenant):
    client = tenant("tagged")
    tagged = client.post("/v1/jobs", json=lenet_spec(tags=["b", "a", "b"])).json()
    assert tagged["tags"] == ["a", "b"]  # sorted, distinct
    other = client.post("/v1/jobs", json=lenet_spec(tags=["b"])).json()
    assert client.get(f"/v1/jobs/{tagged['id']}").json()["tags"] == ["a", "b"]
    assert ids(every_page(client, "/v1/jobs", tag="b")) == [other["id"], tagged["id"]]
    assert ids(every_page(client, "/v1/jobs", tag=["a", "b"])) == [tagged["id"]]
    run_id = finish(api, tagged, [0.5])[0]
    assert client.get(f"/v1/runs/{run_id}").json()["tags"] == ["a", "b"]
    assert every_page(client, "/v1/runs", tag="a")[0]["tags"] == ["a", "b"]


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/runs"])
def test_a_bad_tag_is_a_422_at_its_place(api, path):
    refused = api.http.get(path, params={"tag": ["fine", "not fine!"]})
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["query", "tag", 1]


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"sort": "name"}, ["query", "sort"]),
        ({"arch": "resnet"}, ["query", "arch"]),
        ({"dataset": "imagenet"}, ["query", "dataset"]),
        ({"dataset_id": "../x"}, ["query", "dataset_id"]),
    ],
)
def test_unknown_run_filters_are_422s(api, params, loc):
    refused = api.http.get("/v1/runs", params=params)
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == loc


LISTS = ["/v1/jobs", "/v1/runs", "/v1/ensembles", "/v1/datasets"]


@pytest.mark.parametrize("path", LISTS)
def test_limits_are_bounded(api, path):
    maximum = api.settings.max_page_size
    assert api.http.get(path, params={"limit": maximum}).status_code == 200
    for limit in (0, maximum + 1):
        refused = api.http.get(path, params={"limit": limit})
        assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["query", "limit"]


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize("cursor", ["not-a-cursor", "eyJsaXN0IjogMX0", "W10"])  # junk, {"list": 1}, []
def test_a_bad_cursor_is_a_422(api, path, cursor):
    refused = api.http.get(path, params={"cursor": cursor})
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["query", "cursor"]


def envelope(after: str, listing: str = "runs", sort: str = "test_acc") -> str:
    """A cursor as the API makes them, around a bookmark of our own (sqlakeyset's format)."""
    raw = json.dumps({"list": listing, "sort": sort, "after": after}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "bookmark",
    [
        ">s:high~dt:2026-01-01 00:00:00~s:x",  # a string where the accuracy goes
        ">f:0.5~s:yesterday~s:x",  # a string where the time goes
        ">f:0.5~dt:2026-01-01 00:00:00",  # a key short
        "<f:0.5~dt:2026-01-01 00:00:00~s:x",  # backwards: the API never makes those
        ">x~x~x",  # nulls
    ],
)
def test_a_forged_cursor_is_a_422_not_a_database_error(api, bookmark):
    refused = api.http.get("/v1/runs", params={"sort": "test_acc", "cursor": envelope(bookmark)})
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["query", "cursor"]
    made_like_ours = envelope(">f:0.5~dt:2026-01-01 00:00:00~s:x")
    assert api.http.get("/v1/runs", params={"sort": "test_acc", "cursor": made_like_ours}).status_code == 200


def test_a_cursor_works_only_on_the_list_and_sort_it_came_from(api, tenant):
    client = tenant("cursors")
    for acc in (0.1, 0.2, 0.3):
        trained(api, client, accs=[acc])
    upload(client, "one")
    upload(client, "two")
    cursors = {
        ("/v1/jobs", "created_at"): client.get("/v1/jobs", params={"limit": 1}).json()["next_cursor"],
        ("/v1/datasets", "created_at"): client.get("/v1/datasets", params={"limit": 1}).json()["next_cursor"],
    }
    for sort in ("created_at", "test_acc"):
        page = client.get("/v1/runs", params={"limit": 1, "sort": sort}).json()
        cursors[("/v1/runs", sort)] = page["next_cursor"]
    assert all(cursors.values())
    for (path, sort), cursor in cursors.items():
        assert client.get(path, params={"cursor": cursor, "sort": sort}).status_code == 200
        for (other_path, other_sort), _ in cursors.items():
            if (other_path, other_sort) == (path, sort):
                continue
            refused = client.get(other_path, params={"cursor": cursor, "sort": other_sort})
            assert refused.status_code == 422, (path, sort, other_path, other_sort)
            assert refused.json()["detail"][0]["loc"] == ["query", "cursor"]
            assert "this cursor pages" in refused.json()["detail"][0]["msg"]


def test_a_tenant_lists_only_its_own_runs(api, tenant):
    owner, stranger = tenant("owner"), tenant("stranger")
    runs = trained(api, owner)
    with api.app.state.resources.sessions() as session:
        job_id = session.get(Run, runs[0]).job_id
    assert ids(every_page(owner, "/v1/runs")) == runs
    assert every_page(stranger, "/v1/runs") == []
    assert every_page(stranger, "/v1/runs", job_id=job_id) == []


def test_the_client_reads_every_list_as_pages(api):
    key = api.new_key("client")
    with api.client(key) as http:
        trained(api, http, accs=[0.8], tags=["via-client"])
        trained(api, http, accs=[0.6], tags=["via-client", "second"])
    with TrainyardClient(api.url, api_key=key) as client:
        first = client.runs(limit=1, sort="test_acc", tag=["via-client"])
        assert [run["test_acc"] for run in first["items"]] == [0.8]
        rest = client.runs(limit=1, sort="test_acc", tag=["via-client"], cursor=first["next_cursor"])
        assert [run["test_acc"] for run in rest["items"]] == [0.6] and rest["next_cursor"] is None
        assert [job["tags"] for job in client.jobs(tags=["second"])["items"]] == [["second", "via-client"]]
        assert client.ensembles() == {"items": [], "next_cursor": None}
        assert client.datasets() == {"items": [], "next_cursor": None}

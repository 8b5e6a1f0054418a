"""GET /v1/catalog says which file-backed datasets this server has and how to install the others; a job on
a missing one is a 422 with that hint, and nothing is stored or queued."""

from __future__ import annotations

from tests.factories import lenet_spec, training
from tests.idx_files import needs_fashion_mnist, write_mnist


def catalog_datasets(api) -> dict[str, dict]:
    response = api.http.get("/v1/catalog")
    assert response.status_code == 200, response.text
    return {d["type"]: d for d in response.json()["datasets"]}


@needs_fashion_mnist
def test_fashion_mnist_from_debian_is_available_with_no_data_directory_set_up(in_process_api):
    fashion = catalog_datasets(in_process_api)["fashion_mnist"]
    assert (fashion["available"], fashion["install"]) == (True, None)
    spec = lenet_spec(dataset={"name": "fashion_mnist"}, training=training(epochs=1))
    assert in_process_api.http.post("/v1/jobs", json=spec).status_code == 202


def test_a_missing_dataset_is_a_422_with_the_install_hint_and_nothing_queued(in_process_api):
    data_dir = in_process_api.settings.data_dir
    mnist = catalog_datasets(in_process_api)["mnist"]
    assert mnist["available"] is False
    assert f"put the IDX files in {data_dir / 'MNIST' / 'raw'}/" in mnist["install"]
    jobs, queued = in_process_api.http.get("/v1/jobs").json()["items"], in_process_api.queued_messages()

    response = in_process_api.http.post("/v1/jobs", json=lenet_spec(dataset={"name": "mnist"}))
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "dataset", "name"]
    assert str(data_dir / "mnist") in error["msg"] and "Nothing is downloaded" in error["msg"]
    assert in_process_api.http.get("/v1/jobs").json()["items"] == jobs
    assert in_process_api.queued_messages() == queued

    # Files put in the data directory while the server runs count at once, in the catalog and for jobs.
    write_mnist(data_dir / "mnist", gz=True)
    mnist = catalog_datasets(in_process_api)["mnist"]
    assert (mnist["available"], mnist["install"]) == (True, None)
    assert in_process_api.http.post("/v1/jobs", json=lenet_spec(dataset={"name": "mnist"})).status_code == 202

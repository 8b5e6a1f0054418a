"""A Python client generated from the live /openapi.json by openapi-python-client trains a job.

What a user gets from the schema alone: every operation generated (no warning that drops one), the key
asked for by the client class, and typed answers a job can be followed through to its run.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.factories import lenet_spec, training
from tests.live_stack import LiveStack

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "scripts" / "openapi-python-client.yaml"
PACKAGE = "trainyard_client"

pytestmark = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="openapi-python-client 0.29 generates code for Python >= 3.11"
)


@pytest.fixture(scope="module")
def client_package(stack: LiveStack, tmp_path_factory):
    """The generated package, imported from a scratch folder, and gone from sys.modules afterwards."""
    folder = tmp_path_factory.mktemp("generated")
    command = [
        *(sys.executable, "-m", "openapi_python_client", "generate"),
        *("--url", f"{stack.url}/openapi.json", "--config", str(CONFIG)),
        *("--meta", "none", "--output-path", str(folder / PACKAGE), "--fail-on-warning"),
    ]
    generated = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert generated.returncode == 0, generated.stdout + generated.stderr
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(folder))
        for name in [name for name in sys.modules if name == PACKAGE or name.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def operation(tag: str, name: str):
    """A generated operation module: `sync` answers the parsed model, `sync_detailed` the response too."""
    return importlib.import_module(f"{PACKAGE}.api.{tag}.{tag}_{name}")


def test_a_generated_client_trains_a_job_and_reads_its_run(stack: LiveStack, client_package):
    models = importlib.import_module(f"{PACKAGE}.models")
    anonymous = client_package.Client(base_url=stack.url)
    assert operation("jobs", "list_jobs").sync_detailed(client=anonymous).status_code == 401

    client = client_package.AuthenticatedClient(base_url=stack.url, token=stack.api_key)
    spec = models.JobSpec.from_dict(lenet_spec(name="generated-client", training=training(epochs=1)))
    job = operation("jobs", "submit_job").sync(client=client, body=spec)
    assert isinstance(job, models.JobOut), job
    assert job.spec.training.epochs == 1 and job.summary.params > 0
    finished = (models.JobStatus.SUCCEEDED, models.JobStatus.FAILED, models.JobStatus.CANCELLED)
    deadline = time.monotonic() + 120  # a bound on the poll, not a check of speed
    while job.status not in finished and time.monotonic() < deadline:
        time.sleep(0.2)
        job = operation("jobs", "read_job").sync(client=client, job_id=job.id)
    assert job.status == models.JobStatus.SUCCEEDED, job.error
    assert job.metrics.test_acc > 0.5 and job.metrics.best_val_acc > 0.5

    run = operation("runs", "read_run").sync(client=client, run_id=job.runs[0].id)
    assert isinstance(run, models.RunOut) and run.job_id == job.id
    assert run.metrics.test_acc == run.test_acc == job.metrics.test_acc
    weights = operation("runs", "download_weights").sync_detailed(client=client, run_id=run.id)
    assert weights.status_code == 200 and len(weights.content) > 1000

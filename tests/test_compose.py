"""docker-compose.yml describes the production stack with commands that the trainyard CLI accepts."""

import shlex
from pathlib import Path

import pytest
import typer
import yaml

from trainyard.cli import app

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def test_the_five_services_are_there():
    assert {"api", "worker", "redis", "postgres", "minio"} <= SERVICES.keys()
    assert (ROOT / "Dockerfile").is_file()


def test_worker_reserves_the_gpus():
    devices = SERVICES["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]} in devices


def test_commands_are_real_cli_subcommands_with_valid_options():
    cli = typer.main.get_command(app)
    commands = {name: SERVICES[name]["command"] for name in ("api", "worker")}
    for service, command in commands.items():
        argv = shlex.split(command) if isinstance(command, str) else list(command)
        assert argv[0] in SCRIPTS, f"{service}: {argv[0]} is not a console script"
        assert argv[1] in cli.commands, f"{service}: trainyard has no subcommand {argv[1]}"
        # Parsing (without running) rejects unknown options and bad values.
        cli.commands[argv[1]].make_context(argv[1], argv[2:])


def test_api_and_worker_share_the_object_store_not_a_disk_and_wait_for_healthy_services():
    for name in ("api", "worker"):
        service = SERVICES[name]
        assert "volumes" not in service, f"{name}: a volume shared with the other would hide a missing store"
        environment = service["environment"]
        assert environment["TRAINYARD_HOME"] == "/data"
        assert environment["DATABASE_URL"].startswith("postgresql+psycopg://")
        assert environment["REDIS_URL"] == "redis://redis:6379/0"
        assert environment["TRAINYARD_ARTIFACTS_URL"] == "s3://trainyard/artifacts"
        assert environment["TRAINYARD_S3_ENDPOINT_URL"] == "http://minio:9000"
        assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= environment.keys()
        conditions = {name: d["condition"] for name, d in service["depends_on"].items()}
        assert conditions.pop("minio-bucket") == "service_completed_successfully"
        assert set(conditions.values()) == {"service_healthy"}
    for name in ("api", "redis", "postgres", "minio"):
        assert "healthcheck" in SERVICES[name], name
    assert "/healthz" in " ".join(SERVICES["api"]["healthcheck"]["test"])


def test_redis_keeps_the_queue_and_curves_across_a_restart():
    redis = SERVICES["redis"]
    assert redis["command"][:3] == ["redis-server", "--appendonly", "yes"]
    volume = redis["volumes"][0].split(":")
    assert volume[1] == "/data" and volume[0] in COMPOSE["volumes"]


def test_minio_keeps_its_objects_and_the_bucket_is_made_before_trainyard_starts():
    minio = SERVICES["minio"]
    assert minio["command"][:2] == ["server", "/data"]
    volume = minio["volumes"][0].split(":")
    assert volume[1] == "/data" and volume[0] in COMPOSE["volumes"]
    bucket = SERVICES["minio-bucket"]
    assert bucket["depends_on"]["minio"]["condition"] == "service_healthy"
    script = " ".join(bucket["command"])
    assert "mc mb --ignore-existing local/trainyard" in script
    # The same bucket the services are told to use, with the credentials MinIO was started with.
    api = SERVICES["api"]["environment"]
    assert api["TRAINYARD_ARTIFACTS_URL"].startswith("s3://trainyard/")
    assert api["AWS_ACCESS_KEY_ID"] == minio["environment"]["MINIO_ROOT_USER"]
    assert api["AWS_SECRET_ACCESS_KEY"] == minio["environment"]["MINIO_ROOT_PASSWORD"]

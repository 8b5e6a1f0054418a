"""A real S3 API server for tests: moto's standalone server (`moto[server]`) as a child process, the
object store a multi-host deployment shares (MinIO in docker-compose.yml, S3 itself in the cloud)."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from dataclasses import dataclass

import httpx

from trainyard.services import free_port

# moto accepts any credentials; boto3 wants some to sign with, from the usual variables.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "trainyard-test",
    "AWS_SECRET_ACCESS_KEY": "trainyard-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class S3Server:
    process: subprocess.Popen
    endpoint_url: str

    def new_bucket(self) -> str:
        """A bucket of its own, so that no test sees another's objects."""
        import boto3

        name = f"trainyard-{uuid.uuid4().hex[:12]}"
        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
        )
        client.create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_s3_server() -> S3Server:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto's server exited with {process.returncode}")
        try:
            httpx.get(f"{endpoint_url}/moto-api/", timeout=1)
            return S3Server(process, endpoint_url)
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise TimeoutError("moto's server did not answer within 30 s")

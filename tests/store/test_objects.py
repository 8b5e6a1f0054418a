"""The artifact store's contract (store/objects.py), held by both kinds: a folder, and a bucket of a real
S3 API server (moto's, a separate process)."""

from __future__ import annotations

import pytest
import torch

from store.artifacts import load_weights, read_meta, read_shapes, save_weights
from store.objects import Artifact, ArtifactStore, LocalStore, S3Store


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path) -> ArtifactStore:
    if request.param == "local":
        return LocalStore(tmp_path / "artifacts")
    server = request.getfixturevalue("s3_server")
    return S3Store(server.new_bucket(), "deployment/a", server.endpoint_url)


def test_an_object_is_seen_whole_or_not_at_all(store):
    store.put_bytes("jobs/j/w.safetensors", b"old")
    with store.writing("jobs/j/w.safetensors") as path:
        with open(path, "wb") as file:
            file.write(b"half of the new")
            file.flush()
            assert store.read_bytes("jobs/j/w.safetensors") == b"old"  # the reader sees the last whole one
    assert store.read_bytes("jobs/j/w.safetensors") == b"half of the new"

    with pytest.raises(RuntimeError), store.writing("jobs/j/new.safetensors") as path:
        path.write_bytes(b"torn")
        raise RuntimeError("the writer died mid-write")
    assert not store.exists("jobs/j/new.safetensors")
    with pytest.raises(FileNotFoundError):
        store.read_bytes("jobs/j/new.safetensors")


def test_a_safetensors_header_is_read_alone_by_ranges(store, monkeypatch):
    tensors = {"conv.weight": torch.randn(256, 1024), "conv.bias": torch.zeros(256, dtype=torch.float64)}
    weights = Artifact(store, "jobs/j/member-0.safetensors")
    save_weights(weights, tensors, {"num_classes": 10})
    assert store.size(weights.key) > 2**20

    def whole_object(*args, **kwargs):
        raise AssertionError("the whole object was read for its header")

    with monkeypatch.context() as patched:
        patched.setattr(store, "read_bytes", whole_object)
        patched.setattr(store, "stream", whole_object)
        assert read_meta(weights) == {"num_classes": 10}
        shapes = read_shapes(weights)
    assert {name: (t.shape, t.dtype, t.device.type) for name, t in shapes.items()} == {
        "conv.weight": ((256, 1024), torch.float32, "meta"),
        "conv.bias": ((256,), torch.float64, "meta"),
    }
    loaded, meta = load_weights(weights)
    assert meta == {"num_classes": 10} and all(torch.equal(loaded[k], v) for k, v in tensors.items())
    assert store.read_range(weights.key, 0, 8) == store.read_bytes(weights.key)[:8]


def test_a_download_streams_in_pieces_and_a_missing_one_says_so_at_once(store):
    data = bytes(range(256)) * (3 * 4096 + 7)  # three pieces of 1 MiB and a bit
    store.put_bytes("ensembles/e.safetensors", data)
    pieces = list(store.stream("ensembles/e.safetensors", chunk=2**20))
    assert len(pieces) == 4 and b"".join(pieces) == data
    assert store.size("ensembles/e.safetensors") == len(data)
    with pytest.raises(FileNotFoundError):
        store.stream("ensembles/none.safetensors")
    with pytest.raises(FileNotFoundError):
        store.size("ensembles/none.safetensors")


def test_deleting_an_object_a_folder_or_what_is_gone(store, tmp_path):
    for key in ("jobs/a/w.safetensors", "jobs/a/c-1.safetensors", "jobs/ab/w.safetensors", "uploads/u.npz"):
        store.put_bytes(key, key.encode())
    store.delete_prefix("jobs/a/")
    assert not store.exists("jobs/a/w.safetensors") and not store.exists("jobs/a/c-1.safetensors")
    assert store.exists("jobs/ab/w.safetensors")  # a folder, not every key that begins alike
    store.delete("uploads/u.npz")
    store.delete("uploads/u.npz")  # twice is harmless
    store.delete_prefix("jobs/none/")
    assert not store.exists("uploads/u.npz")

    store.download("jobs/ab/w.safetensors", tmp_path / "copies" / "w.safetensors")
    assert (tmp_path / "copies" / "w.safetensors").read_bytes() == b"jobs/ab/w.safetensors"
    with pytest.raises(FileNotFoundError):
        store.download("jobs/a/w.safetensors", tmp_path / "copies" / "gone")
    assert sorted(p.name for p in (tmp_path / "copies").iterdir()) == ["w.safetensors"]  # no partial


def test_a_row_from_before_keys_names_a_local_file_which_is_still_read(store, tmp_path):
    old = tmp_path / "old-home" / "artifacts" / "jobs" / "j" / "member-0.safetensors"
    save_weights(old, {"w": torch.ones(2)}, {"old": True})
    artifact = store.at(str(old))
    assert artifact == Artifact.file(old) and read_meta(artifact) == {"old": True}
    assert store.at("jobs/j/member-0.safetensors") == Artifact(store, "jobs/j/member-0.safetensors")


def test_an_s3_store_keeps_its_objects_under_its_prefix(s3_server):
    import boto3

    bucket = s3_server.new_bucket()
    S3Store(bucket, "/team/trainyard/", s3_server.endpoint_url).put_bytes("jobs/j/w.safetensors", b"w")
    listed = boto3.client("s3", endpoint_url=s3_server.endpoint_url).list_objects_v2(Bucket=bucket)
    assert [item["Key"] for item in listed["Contents"]] == ["team/trainyard/jobs/j/w.safetensors"]


def test_the_settings_name_the_store(tmp_path):
    from store.objects import artifact_store
    from store.settings import Settings

    local = artifact_store(Settings(home=tmp_path))
    assert local == LocalStore(tmp_path.resolve() / "artifacts")
    s3 = artifact_store(
        Settings(home=tmp_path, artifacts_url="s3://models/prod", s3_endpoint_url="http://minio:9000")
    )
    assert (s3.bucket, s3.prefix, s3.endpoint_url) == ("models", "prod/", "http://minio:9000")
    with pytest.raises(ValueError, match="s3://bucket"):
        artifact_store(Settings(home=tmp_path, artifacts_url="gs://models"))

"""A stored artifact as an HTTP download, streamed from the store piece by piece: a 200 MB AlexNet is
never held whole in the API's memory, wherever the store is."""

from __future__ import annotations

from fastapi import HTTPException
from fastapi.responses import StreamingResponse

from store.objects import Artifact

SAFETENSORS = "application/octet-stream"
# What OpenAPI says of such a route (a FileResponse route said the same by itself).
DOWNLOAD_RESPONSES = {200: {"content": {SAFETENSORS: {"schema": {"type": "string", "format": "binary"}}}}}


def download(artifact: Artifact, *, missing: HTTPException, filename: str | None = None) -> StreamingResponse:
    """The object with its length (clients show progress, and notice a cut-off transfer); `missing` is
    raised when it is not in the store."""
    try:
        size = artifact.store.size(artifact.key)
        pieces = artifact.store.stream(artifact.key)
    except FileNotFoundError:
        raise missing from None
    headers = {"Content-Length": str(size)}
    if filename:
        headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return StreamingResponse(pieces, media_type=SAFETENSORS, headers=headers)

"""Idempotency-Key on POST /v1/jobs and POST /v1/ensembles: a retried request gets the first answer.

A client that lost the answer to a POST (a timeout, a dropped connection) sends it again with the same
key and is answered as the first time, instead of queueing the work twice. The first answer is kept in
the transaction that stores the job or ensemble, so there is never one without the other; two requests
racing with one key meet at the table's primary key, and the loser replays the winner's answer. Only
an accepted request is kept: a refused one (422, 429) can be corrected and sent again under its key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Header, Response
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.field_errors import invalid
from store import idempotency

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[!-~]+$",  # printable ASCII, no spaces
        description="a key of the client's choosing (a UUID, say): sent again with the same body within "
        "24 hours, the first answer is replayed (header Idempotent-Replayed: true) and nothing is queued; "
        "with another body it is a 422",
    ),
]


@dataclass(frozen=True)
class Idempotent:
    """One request's key: `replay` answers a repeat, `remember` keeps the first answer."""

    session: Session
    tenant: str
    scope: str
    key: str
    digest: str
    ttl_s: float

    @classmethod
    def of(
        cls, session: Session, tenant: str, scope: str, key: str | None, body: BaseModel, ttl_s: float
    ) -> Idempotent | None:
        if key is None:
            return None
        # What the client sent, not what defaults filled in: a body that names a default is another body.
        digest = idempotency.request_digest(body.model_dump(mode="json", exclude_unset=True))
        return cls(session, tenant, scope, key, digest, ttl_s)

    def replay(self) -> Response | None:
        """The first answer to this key; None if there was none; 422 if it came with another body."""
        first = idempotency.find(self.session, self.tenant, self.scope, self.key, self.ttl_s)
        if first is None:
            return None
        if first.request_sha256 != self.digest:
            message = "this Idempotency-Key was used with another body"
            raise invalid(("header", "idempotency-key"), message, self.key)
        headers = {"Location": first.location, "Idempotent-Replayed": "true"}
        return Response(first.response, first.status_code, headers, media_type="application/json")

    def remember(self, status_code: int, location: str, answer: BaseModel) -> None:
        idempotency.remember(
            self.session,
            tenant=self.tenant,
            scope=self.scope,
            key=self.key,
            digest=self.digest,
            status_code=status_code,
            location=location,
            response=answer.model_dump_json(),
            ttl_s=self.ttl_s,
        )

    def forget(self) -> None:
        """Drops the kept answer: what it answered was taken back (the queue was away)."""
        idempotency.forget(self.session, self.tenant, self.scope, self.key)


def commit_or_replay(session: Session, idempotent: Idempotent | None) -> Response | None:
    """Commits; if a request with the same key committed first, rolls back and replays its answer."""
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        replay = idempotent.replay() if idempotent is not None else None
        if replay is None:
            raise
        return replay
    return None

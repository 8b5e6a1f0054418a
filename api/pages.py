"""The one shape of every list (a page of items and the cursor of the next: store/pages.py), and the query
parameters the lists share."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, Field

from api.field_errors import invalid
from models.spec import Tag

Item = TypeVar("Item")


class Page(BaseModel, Generic[Item]):
    """Subclassed once per item type (JobPage, RunPage...), so the OpenAPI schema names each page."""

    items: list[Item]
    next_cursor: str | None = Field(
        description="pass it as `cursor` for the next page (same list, same sort); null on the last page"
    )


# The `cursor` query parameter of every list route; `limit` is api/limits.py page_size.
CursorQuery = Annotated[
    str | None,
    Query(max_length=2000, description="the next_cursor of the previous page; omitted for the first page"),
]

# `tag=a&tag=b`: only what carries every one of these tags; a tag that could not be a spec's is a 422.
TagsQuery = Annotated[
    list[Tag], Query(default_factory=list, max_length=16, description="repeatable: every one must match")
]


@contextmanager
def bad_cursor_as_422(cursor: str | None) -> Iterator[None]:
    """Around a store list call: its ValueError (a cursor it did not make) becomes the 422 of query.cursor."""
    try:
        yield
    except ValueError as exc:
        raise invalid(("query", "cursor"), str(exc), cursor) from exc

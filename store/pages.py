"""Keyset paging, written once for every list route: a page of rows and the opaque cursor of the next.

sqlakeyset builds the "after this row" condition and reads the last row's sort keys (an expression such
as coalesce(test_acc, -1) included), so pages stay stable while rows are added. Its bookmark travels in
an envelope naming the list and the sort it was made for: a cursor of one list or one order is refused
on another (a ValueError, the route's 422) instead of silently paging from somewhere else. The
bookmark's values are checked against the sort's key types, so a forged cursor is a 422 too, never a
database error.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from sqlakeyset import InvalidPage, select_page, unserialize_bookmark
from sqlalchemy import ColumnElement, Select
from sqlalchemy.orm import Session


@dataclass(frozen=True)
class Sort:
    """A list's order: `keys`, most significant first, the last one unique (the id) to break ties.

    All descending (newest or best first) or all ascending; no key may be NULL (coalesce it), as keyset
    conditions do not compare NULLs.
    """

    name: str
    keys: tuple[ColumnElement[Any], ...]
    descending: bool = True

    def order_by(self) -> list[ColumnElement[Any]]:
        return [key.desc() if self.descending else key.asc() for key in self.keys]


def page(
    session: Session, query: Select, *, listing: str, sort: Sort, limit: int, cursor: str | None
) -> tuple[list[Any], str | None]:
    """Up to `limit` rows of `query` (one ORM entity) in `sort`, after `cursor`; and the next page's
    cursor, None on the last page. Raises ValueError on a cursor not made for this list and sort."""
    marker = _marker(cursor, listing, sort) if cursor else None
    rows = select_page(session, query.order_by(*sort.order_by()), per_page=limit, page=marker)
    items = [row[0] for row in rows]
    if not rows.paging.has_next:
        return items, None
    return items, _encode({"list": listing, "sort": sort.name, "after": rows.paging.bookmark_next})


def _encode(envelope: dict[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(envelope).encode()).decode().rstrip("=")


def _marker(cursor: str, listing: str, sort: Sort) -> Any:
    try:
        envelope = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        made_for, bookmark = (envelope["list"], envelope["sort"]), envelope["after"]
        marker = unserialize_bookmark(bookmark)
    except (ValueError, TypeError, KeyError, InvalidPage) as exc:  # whatever it is, not a cursor we made
        raise ValueError("not a valid cursor") from exc
    if made_for != (listing, sort.name):
        raise ValueError(f"this cursor pages {made_for[0]} by {made_for[1]}, not {listing} by {sort.name}")
    place = marker.place
    if marker.backwards or place is None or len(place) != len(sort.keys):
        raise ValueError("not a valid cursor")
    for value, key in zip(place, sort.keys, strict=True):
        expected = key.type.python_type
        if not isinstance(value, expected) and not (expected is float and isinstance(value, int)):
            raise ValueError("not a valid cursor")
    return marker

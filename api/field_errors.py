"""422s that name the field at fault, shaped as FastAPI reports its own validation errors.

A client reads every 422 the same way, whether pydantic refused the body or a later check did (a
network that does not fit its input, a limit, an unknown run): `detail` is a list of errors, each with
its `loc` path, a `msg` and the `input`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi.exceptions import RequestValidationError

from models.spec import SpecError


def field_error(loc: tuple, message: str, value: Any = None, kind: str = "value_error") -> dict[str, Any]:
    return {"type": kind, "loc": loc, "msg": message, "input": value}


def invalid(loc: tuple, message: str, value: Any = None) -> RequestValidationError:
    """The 422 of one field: raise it."""
    return RequestValidationError([field_error(loc, message, value)])


@contextmanager
def spec_errors_as_422() -> Iterator[None]:
    """A SpecError (models/: a check pydantic cannot make alone) becomes the 422 of its body field."""
    try:
        yield
    except SpecError as exc:
        raise invalid(("body", *exc.loc), exc.message) from exc

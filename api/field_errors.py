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
from store.vetting import field_error


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

"""Dotted paths into a JobSpec ("optimizer.lr", "model.layers.2.out_channels"): checked against the
spec's pydantic models, and written into a spec's JSON to make one point of a sweep."""

from __future__ import annotations

import copy
import difflib
import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel

from models.spec import JobSpec, SpecError


class PathError(ValueError):
    """A path that names no field of the JobSpec; the message names the nearest valid prefix."""


def check_path(path: str) -> None:
    """Raise PathError unless every part of `path` is a field (or, in a list, an index) of what the
    part before it can be. A union (optimizer, dataset, layers) takes a field that any member has."""
    kinds: list[Any] = [JobSpec]
    parts = path.split(".")
    for depth, part in enumerate(parts):
        kinds, known = _step(kinds, part)
        if not kinds:
            where = "the spec" if depth == 0 else f"'{'.'.join(parts[:depth])}'"
            if not known:
                raise PathError(f"{where} is a value, not an object: it has no field '{part}'")
            close = difflib.get_close_matches(part, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise PathError(f"{where} has no field '{part}' (it has {', '.join(known)}){hint}")


def with_value(raw: dict, resolved: dict, path: str, value: Any) -> dict:
    """A copy of the spec JSON `raw` with `value` at `path`.

    Objects that `raw` leaves out are created, so that validation fills in their defaults (the
    preset's lr for the optimizer type being tried, say); a union's new object takes its
    discriminator (optimizer "type", dataset "name") from `resolved`, the validated spec's dump, so
    that "optimizer.lr" over a base without an optimizer sets the lr of the optimizer that runs."""
    spec = copy.deepcopy(raw)
    node, resolved_node, kinds = spec, resolved, [JobSpec]
    *parents, last = path.split(".")
    for part in parents:
        key = _key(node, part, path)
        resolved_child = _get(resolved_node, key)
        child = _get(node, key)
        if not isinstance(child, (dict, list)):
            child = _new_object(kinds, part, resolved_child)
            node[key] = child
        node, resolved_node, kinds = child, resolved_child, _step(kinds, part)[0]
    node[_key(node, last, path)] = value
    return spec


def _step(kinds: list[Any], part: str) -> tuple[list[Any], list[str]]:
    """What `part` can be inside any of `kinds`, and the names `kinds` take (for the message)."""
    found: list[Any] = []
    known: set[str] = set()
    for kind in kinds:
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            known.update(kind.model_fields)
            if part in kind.model_fields:
                found += _members(kind.model_fields[part].annotation)
        elif get_origin(kind) is list:
            known.add("<index>")
            if part.isdigit():
                found += _members(get_args(kind)[0])
    return found, sorted(known)


def _members(annotation: Any) -> list[Any]:
    """The types an annotation can hold: Annotated and unions unwrapped, None left out."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _members(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return [member for arg in get_args(annotation) for member in _members(arg)]
    return [] if annotation is type(None) else [annotation]


def _discriminator(kinds: list[Any], part: str) -> str | None:
    for kind in kinds:
        if isinstance(kind, type) and issubclass(kind, BaseModel) and part in kind.model_fields:
            discriminator = kind.model_fields[part].discriminator
            return discriminator if isinstance(discriminator, str) else None
    return None


def _new_object(kinds: list[Any], part: str, resolved: Any) -> dict:
    discriminator = _discriminator(kinds, part)
    if discriminator and isinstance(resolved, dict) and discriminator in resolved:
        return {discriminator: resolved[discriminator]}
    return {}


def _key(node: dict | list, part: str, path: str) -> str | int:
    if isinstance(node, dict):
        return part
    index = int(part) if part.isdigit() else len(node)
    if index >= len(node):
        raise SpecError(("space", path), f"'{part}' is not an index of the list ({len(node)} items) here")
    return index


def _get(node: Any, key: str | int) -> Any:
    if isinstance(node, dict):
        return node.get(key)
    if isinstance(node, list) and isinstance(key, int) and key < len(node):
        return node[key]
    return None

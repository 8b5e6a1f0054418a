"""Rewrite the tables in docs/*.md that repeat the catalog or the settings, from the code that defines them.

Each table sits between `<!-- generated: NAME -->` and `<!-- end generated -->`; NAME picks its builder
below. `python -m scripts.docs_tables` (`make docs`) rewrites them; `--check` only exits 1, naming the
files, when one differs from what the code generates (tests/test_docs_tables.py runs that check).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from models.catalog import BOUNDS, _param, catalog
from models.spec import ModelSpec, SplitOptions
from store.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
COMMAND = "python -m scripts.docs_tables"
BLOCK = re.compile(r"(<!-- generated: ([\w-]+) -->\n)(.*?)(<!-- end generated -->)", re.S)
BOUND_TEXT = {"minimum": "≥ {}", "exclusive_minimum": "> {}", "maximum": "≤ {}", "exclusive_maximum": "< {}"}
# Settings without a description of their own in store/settings.py; the table says this much about them.
SETTING_NOTES = {
    "database_url": "e.g. `postgresql+psycopg://user:pw@host/db`; default: SQLite in home",
    "redis_url": "broker and curve streams; `trainyard up` starts a private server unless this is set",
    "port": "the API's port",
}


# ---------------------------------------------------------------- cells


def code(value: Any) -> str:
    """A value as the JSON a user writes, in backticks (`null`, `true`, `0.001`), a string without quotes."""
    return f"`{value}`" if isinstance(value, str) else f"`{json.dumps(value)}`"


def bounds(param: dict[str, Any]) -> str:
    """`> 0`, `≥ 1, ≤ 1000`, or the choices; empty when the field takes any value of its type."""
    if "choices" in param:
        return ", ".join(code(choice) for choice in param["choices"])
    return ", ".join(text.format(param[key]) for key, text in BOUND_TEXT.items() if key in param)


def default(param: dict[str, Any]) -> str:
    return "required" if param["required"] else code(param["default"])


def field_summary(name: str, param: dict[str, Any]) -> str:
    """`name` (default; bounds), the way a row lists a block's parameters."""
    details = "; ".join(part for part in (default(param), bounds(param)) if part)
    return f"`{name}` ({details})"


def cell(text: str | None) -> str:
    return (text or "").replace("|", "\\|").replace("\n", " ")


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows])


def fields_table(params: dict[str, dict[str, Any]]) -> str:
    """A block's fields: one row each, with default, bounds or choices, and the code's description."""
    rows = [(f"`{n}`", default(p), bounds(p), p["description"] or "") for n, p in params.items()]
    return table(("field", "default", "bounds or choices", "meaning"), rows)


def kinds_table(entries: list[dict[str, Any]], notes: tuple[str, dict[str, str]] | None = None) -> str:
    """A row per member of a discriminated union: its `type`, a note (the formula, say), its parameters."""
    rows = []
    for entry in entries:
        params = ", ".join(field_summary(n, p) for n, p in entry["params"].items()) or "none"
        note = (f"`{notes[1][entry['type']]}`",) if notes else ()
        rows.append((f"`{entry['type']}`", *note, params))
    header = ("`type`", *((notes[0],) if notes else ()), "parameters (default; bounds)")
    return table(header, rows)


# ---------------------------------------------------------------- the tables


def datasets() -> str:
    """Each dataset with the fields it adds to (or changes in) the split options every dataset takes."""
    shared = {name: _param(field) for name, field in SplitOptions.model_fields.items()}
    rows = []
    for entry in catalog()["datasets"]:
        own = {n: p for n, p in entry["params"].items() if shared.get(n) != p}
        fields = ", ".join(field_summary(n, p) for n, p in own.items()) or "none"
        rows.append((f"`{entry['type']}`", entry["description"], fields))
    return table(("`name`", "what", "own fields (default; bounds)"), rows)


def split_options() -> str:
    return fields_table({name: _param(field) for name, field in SplitOptions.model_fields.items()})


def model_options() -> str:
    options = ("arch", "activation", "batchnorm", "init")
    return fields_table({name: _param(ModelSpec.model_fields[name]) for name in options})


def preset_defaults() -> str:
    """Each preset's defaults (the catalog's presets[].defaults): optimizer, lr by optimizer type, epochs."""
    rows = []
    for preset in catalog()["presets"]:
        defaults = preset["defaults"]
        lrs = ", ".join(f"`{kind}` {lr:g}" for kind, lr in defaults["lr"].items())
        optimizer, epochs = code(defaults["optimizer"]["type"]), code(defaults["epochs"])
        rows.append((f"`{preset['name']}`", optimizer, lrs, epochs))
    return table(("preset", "optimizer", "its `lr`, by optimizer type", "`epochs`"), rows)


def layers() -> str:
    return kinds_table(catalog()["layers"])


def optimizers() -> str:
    from models.optim import UPDATE_RULES

    return kinds_table(catalog()["optimizers"], ("update per step", UPDATE_RULES))


def schedules() -> str:
    from models.optim import SCHEDULE_FORMULAS

    return kinds_table(catalog()["schedules"], ("formula", SCHEDULE_FORMULAS))


def block(name: str) -> Callable[[], str]:
    return lambda: fields_table(catalog()[name])


def env_names(name: str, field: FieldInfo) -> str:
    """The environment variables a setting reads: TRAINYARD_<NAME>, or its aliases."""
    aliases = getattr(field.validation_alias, "choices", None)
    names = aliases or [Settings.model_config["env_prefix"] + name]
    return ", ".join(f"`{alias.upper()}`" for alias in names)


def setting_default(field: FieldInfo) -> str:
    value = field.default
    if value is PydanticUndefined or value is None:
        return "see meaning"
    if isinstance(value, int) and not isinstance(value, bool) and value >= 2**20 and value % 2**20 == 0:
        return f"`{value}` ({value // 2**20} MiB)" if value < 2**30 else f"`{value}` ({value // 2**30} GiB)"
    return code(str(value) if isinstance(value, Path) else value)


def settings() -> str:
    rows = []
    for name, field in Settings.model_fields.items():
        meaning = field.description or SETTING_NOTES.get(name, "")
        limits = {
            key: getattr(c, attr) for c in field.metadata for attr, key in BOUNDS.items() if hasattr(c, attr)
        }
        rows.append((env_names(name, field), setting_default(field), bounds(limits), meaning))
    return table(("variable", "default", "bounds", "meaning"), rows)


TABLES: dict[str, Callable[[], str]] = {
    "datasets": datasets,
    "split-options": split_options,
    "model-options": model_options,
    "preset-defaults": preset_defaults,
    "layers": layers,
    "optimizers": optimizers,
    "schedules": schedules,
    "regularization": block("regularization"),
    "training": block("training"),
    "early-stopping": lambda: fields_table(catalog()["training"]["early_stopping"]["params"]),
    "augment": lambda: fields_table(catalog()["training"]["augment"]["params"]),
    "ensemble": block("ensemble"),
    "resources": block("resources"),
    "settings": settings,
}


# ---------------------------------------------------------------- the files


def regenerate(text: str, source: str = "docs") -> str:
    """`text` with every generated block rebuilt; an unknown block name is an error, not skipped."""

    def rebuild(match: re.Match) -> str:
        name = match.group(2)
        if name not in TABLES:
            raise SystemExit(f"{source}: unknown generated table {name!r} (known: {', '.join(TABLES)})")
        return f"{match.group(1)}{TABLES[name]()}\n{match.group(4)}"

    return BLOCK.sub(rebuild, text)


def stale_files(docs: Path = DOCS, write: bool = False) -> list[Path]:
    """The docs files whose generated tables differ from the code's; with `write`, rewritten."""
    stale = []
    for path in sorted(docs.glob("*.md")):
        text = path.read_text()
        fresh = regenerate(text, str(path))
        if fresh != text:
            stale.append(path)
            if write:
                path.write_text(fresh)
    return stale


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a table is stale")
    args = parser.parse_args()
    stale = stale_files(write=not args.check)
    for path in stale:
        verb = "is out of date; run `" + COMMAND + "`" if args.check else "rewritten"
        print(f"{path.relative_to(ROOT)} {verb}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())

"""Job states and stop reasons are named once, in store/states.py: a typo elsewhere would fail silently."""

from __future__ import annotations

import ast
from pathlib import Path

from store.states import JobStatus, StopReason

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("api", "models", "store", "trainyard", "worker")
NAMED_ONCE = {Path("store/states.py")}  # migrations/ is left out too: it keeps the values as they were
STATE_WORDS = {member.value for member in (*JobStatus, *StopReason)}


def state_literals(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    return [
        f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in STATE_WORDS
    ]


def test_no_job_state_or_stop_reason_is_written_as_a_string_outside_the_enum_module():
    found = [
        literal
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if path.relative_to(ROOT) not in NAMED_ONCE
        for literal in state_literals(path)
    ]
    assert not found, "use store.states instead of:\n" + "\n".join(found)

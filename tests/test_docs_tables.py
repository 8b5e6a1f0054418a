"""The tables in docs/*.md that repeat the spec's choices or the settings match what the code generates."""

from __future__ import annotations

import shutil

from scripts.docs_tables import COMMAND, DOCS, TABLES, stale_files


def test_generated_tables_match_the_code():
    stale = [path.name for path in stale_files()]
    assert not stale, f"docs out of date with the code: {', '.join(stale)}; run `{COMMAND}` (make docs)"


def test_every_table_appears_in_the_docs():
    text = "".join(path.read_text() for path in DOCS.glob("*.md"))
    missing = [name for name in TABLES if f"<!-- generated: {name} -->" not in text]
    assert not missing, f"generated tables no page shows: {missing}"


def test_a_drifted_default_is_caught_and_rewritten(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    page = shutil.copy(DOCS / "spec.md", docs / "spec.md")
    original = page.read_text()
    # A row the code does not have, as when a default changes in the code but not in the page.
    drifted = original.replace(
        "<!-- end generated -->", "| `sgd` | `x += -lr*dx` | `lr` (`0.1`) |\n<!-- end generated -->", 1
    )
    page.write_text(drifted)
    assert stale_files(docs) == [page]
    assert stale_files(docs, write=True) == [page]
    assert page.read_text() == original
    assert stale_files(docs) == []

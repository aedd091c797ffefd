"""The README shows the tables the pipeline generated, not hand-edited copies."""

from pathlib import Path

from scripts.sync_readme import BLOCK, synced

ROOT = Path(__file__).resolve().parents[1]


def test_readme_tables_match_generated_files():
    text = (ROOT / "README.md").read_text()
    assert BLOCK.search(text), "README has no generated-table block"
    assert synced(text) == text, "README tables drifted: run `python scripts/sync_readme.py`"

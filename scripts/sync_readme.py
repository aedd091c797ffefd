"""Copy generated tables into README.md between `<!-- table: PATH -->` and `<!-- end table -->`.

Run after `dvc repro` (make repro does); tests/test_docs.py fails when the README drifts.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- table: (?P<path>\S+) -->\n)(?P<body>.*?)(<!-- end table -->)", re.S)


def synced(text: str, root: Path = ROOT) -> str:
    def fill(m: re.Match) -> str:
        body = (root / m["path"]).read_text()
        return m.group(1) + body + ("" if body.endswith("\n") else "\n") + m.group(4)

    return BLOCK.sub(fill, text)


if __name__ == "__main__":
    readme = ROOT / "README.md"
    new = synced(readme.read_text())
    if "--check" in sys.argv:
        sys.exit(0 if new == readme.read_text() else 1)
    readme.write_text(new)

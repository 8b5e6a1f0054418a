"""The Fashion-MNIST report runs end to end in its quick form and fills in its page's block, leaving the
page's own text alone. The real report (30 minutes of training) never runs here."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.idx_files import needs_fashion_mnist

ROOT = Path(__file__).resolve().parents[2]
ROWS = (
    "lenet5 (seed 0)",
    "lenet5 + dropout 0.5",
    "two-conv (layer list)",
    "two-conv + dropout 0.5",
    "5 lenet5 members, `mean_probs`",
    "5 lenet5 members, `mean_logits`",
    "lenet5 (seed 0), Polyak average",
    "lenet5 (seed 0), EMA",
    "snapshot ensemble, 5 cycles",
)


@needs_fashion_mnist
def test_the_quick_report_writes_every_row_into_the_pages_block(tmp_path):
    page = tmp_path / "results.md"
    markers = "<!-- fashion-report:start -->\nold\n<!-- fashion-report:end -->"
    page.write_text(f"# Results\n\nwritten by hand\n\n{markers}\n\nmore\n")
    command = [sys.executable, "bench/fashion_report.py", "--quick", "--write", "--page", str(page)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.fullmatch(r"value=-?\d+\.\d\d", done.stdout.strip().splitlines()[-1])

    text = page.read_text()
    assert text.startswith("# Results\n\nwritten by hand\n") and text.endswith("\n\nmore\n")
    assert "old" not in text
    block = text.split("<!-- fashion-report:start -->")[1].split("<!-- fashion-report:end -->")[0]
    table = {
        line.split(" | ")[0].removeprefix("| "): line for line in block.splitlines() if line.startswith("| ")
    }
    for row in ROWS:
        line = table[row]
        accuracy = float(line.split(" | ")[1])
        assert 0.0 <= accuracy <= 1.0
        assert re.search(r"\| \d+ s \|$", line), line  # its wall time
    assert "0.916 (2 Conv+pooling, preprocessing None, Tensorflow's doc)" in block
    assert "`python bench/fashion_report.py --write --quick`" in block

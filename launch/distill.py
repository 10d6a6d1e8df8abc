"""Streaming distillation on Ray: `minillm distill` under its old name (the same flags).

python launch/distill.py --workers 8                      # Ollama teacher at OLLAMA_URL
python launch/distill.py --teacher oracle --preset tiny   # offline: the tasks' own answers
python launch/distill.py --out_dir D --resume             # continue a stopped run
"""

import sys
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from minillm.cli import run  # noqa: E402
from minillm.distill import main  # noqa: E402

if __name__ == "__main__":
    run(partial(main, prog="launch/distill.py"), prog="launch/distill.py", entry=True)

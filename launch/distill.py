"""Streaming distillation on Ray: `minillm distill` under its old name (the same flags).

python launch/distill.py --workers 8                      # Ollama teacher at OLLAMA_URL
python launch/distill.py --teacher oracle --preset tiny   # offline: the tasks' own answers
python launch/distill.py --out_dir D --resume             # continue a stopped run
"""

import sys
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from minillm.cli import import_main, run  # noqa: E402

if __name__ == "__main__":
    main = import_main("minillm.distill", "launch/distill.py")  # one line when MLX is missing
    run(partial(main, prog="python launch/distill.py"), prog="launch/distill.py", entry=True)

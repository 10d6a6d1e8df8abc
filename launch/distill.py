"""Streaming distillation on Ray: teacher generators -> Arrow shards -> MLX learner.

    python launch/distill.py --workers 8                      # Ollama teacher at OLLAMA_URL
    python launch/distill.py --teacher oracle --preset tiny   # offline: the tasks' own answers
    python launch/distill.py --address HEAD:6379 ...          # an existing Ray cluster
    python launch/distill.py --out_dir D --resume             # continue a stopped run

Flags default to the predecessor's environment variables; see `--help`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from minillm.cli import launch  # noqa: E402

if __name__ == "__main__":
    launch("actors.distill_cli", prog="launch/distill.py")

"""GSM8K reinforcement learning (GRPO) on Ray: rollout workers sample with the newest policy
while the MLX learner trains.

    python launch/rl.py --init_from out/sft --warmup_steps 200       # SFT warm-up, then GRPO
    python launch/rl.py --init_from CKPT --data_path my.jsonl --eval_data_path test.jsonl
    python launch/rl.py --init_from CKPT --out_dir out/mlx_rl --resume

Flags default to the predecessor's environment variables; see `--help`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from minillm.cli import launch  # noqa: E402

if __name__ == "__main__":
    launch("actors.rl_cli", prog="launch/rl.py")

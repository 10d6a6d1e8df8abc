"""GSM8K GRPO on Ray: `minillm rl` under its old name (the same flags).

python launch/rl.py --init_from out/sft --data_path gsm8k:train
python launch/rl.py --out_dir D --resume                  # continue a stopped run
"""

import sys
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from minillm.cli import run  # noqa: E402
from minillm.rl.cli import main  # noqa: E402

if __name__ == "__main__":
    run(partial(main, prog="launch/rl.py"), prog="launch/rl.py", entry=True)

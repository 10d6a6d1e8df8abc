"""GSM8K GRPO on Ray: `minillm rl` under its old name (the same flags).

python launch/rl.py --init_from out/sft --data_path gsm8k:train
python launch/rl.py --out_dir D --resume                  # continue a stopped run
"""

import sys
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from minillm.cli import import_main, run  # noqa: E402

if __name__ == "__main__":
    main = import_main("minillm.rl.cli", "launch/rl.py")  # one line when MLX is missing
    run(partial(main, prog="python launch/rl.py"), prog="launch/rl.py", entry=True)

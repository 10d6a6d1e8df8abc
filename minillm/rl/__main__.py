from minillm.cli import run
from minillm.rl.cli import main

run(main)

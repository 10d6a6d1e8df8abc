from minillm.cli import run
from minillm.eval import main

run(main)

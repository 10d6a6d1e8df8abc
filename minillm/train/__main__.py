from minillm.cli import run
from minillm.train.cli import main

run(main)

from minillm.cli import run
from minillm.serve import main

run(main)

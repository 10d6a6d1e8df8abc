from minillm.cli import run
from minillm.export import main

run(main)

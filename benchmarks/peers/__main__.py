import sys

from edgeslim.cli import main

sys.exit(main(["peers", *sys.argv[1:]]))

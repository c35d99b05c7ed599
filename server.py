"""Run the videoid server on its embedded defaults: ``python server.py [serve options]``."""

import sys

from videoid.__main__ import main

if __name__ == "__main__":
    main(["serve", *sys.argv[1:]])

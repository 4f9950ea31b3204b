"""``python -m opslib.logscan PATH|- …`` (the same command as ``python -m opslib logs``)."""

import sys

from ..cli import exit_now
from .cli import main

if __name__ == "__main__":
    exit_now(main(sys.argv[1:]), fast=True)

"""``python -m gateway``: the ``lomash`` command."""

import sys

from gateway._cli import main

if __name__ == "__main__":
    sys.exit(main())

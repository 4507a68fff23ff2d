"""``python -m service``: the ``lomash`` command."""

import sys

from service import main

if __name__ == "__main__":
    sys.exit(main())

"""``python -m tests._launcher serve ...``: the service with the tests' routes and job
kind installed (tests/_test_routes.py); its worker processes run this module too."""

import sys

from service import Launcher, main
from tests._test_routes import TEST_EXTENSION

if __name__ == "__main__":
    sys.exit(main(launcher=Launcher(module="tests._launcher", extensions=[TEST_EXTENSION])))

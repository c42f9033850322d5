"""Suite-wide fixtures. tests/ is put on sys.path so tests import `helpers.*`."""

import pathlib
import sys

TESTS = pathlib.Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

"""``python -m decoder``: the same as the ``decoder`` command."""

import sys

from .cli import main

sys.exit(main())

"""``python -m facekit``: the ``facekit`` command (see :mod:`facekit.cli`)."""

import sys

from .cli import main

sys.exit(main())

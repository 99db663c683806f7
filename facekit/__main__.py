"""``python -m facekit``: the ``facekit`` command (see :mod:`facekit.cli.main`)."""

import sys

from facekit.cli.main import main

sys.exit(main())

"""``python -m nasconv.cli``: the ``nasconv`` command."""

import sys

from nasconv.cli import main

sys.exit(main())

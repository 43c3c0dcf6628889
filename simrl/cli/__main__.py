"""``python -m simrl.cli``: the ``simrl`` command."""

import sys

from simrl.cli import main

sys.exit(main())

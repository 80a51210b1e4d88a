"""``python -m gridnode`` is the ``gridnode`` command."""

import sys

from gridnode.cli import main

sys.exit(main())

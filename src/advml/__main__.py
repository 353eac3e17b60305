"""``python -m advml`` runs the ``advml`` command."""

import sys

from advml.cli.main import main

sys.exit(main())

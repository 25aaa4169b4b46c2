"""``python -m sut_soap`` runs the command line."""

import sys

from sut_soap.cli import main

sys.exit(main())

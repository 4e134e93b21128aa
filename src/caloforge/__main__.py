"""``python -m caloforge`` (and ``torchrun -m caloforge``): the command line."""

import sys

from caloforge.cli import main

sys.exit(main())

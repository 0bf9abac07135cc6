"""``python -m eosmodel.cli ...``: the ``eosmodel`` command (see :mod:`eosmodel.cli`)."""

import sys

from eosmodel.cli import main

sys.exit(main())

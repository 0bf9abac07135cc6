import sys

from eosmodel.cli import main

sys.exit(main())

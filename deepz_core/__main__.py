import sys

from deepz_core.cli import main

sys.exit(main())

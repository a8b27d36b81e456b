import sys

from deepz_core.cli.main import main

sys.exit(main())

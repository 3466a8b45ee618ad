import sys

from overopt.cli import main

sys.exit(main())

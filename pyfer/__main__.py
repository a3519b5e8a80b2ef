import sys

from pyfer.cli import main

sys.exit(main())

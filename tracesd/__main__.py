import sys

from tracesd.cli import main

sys.exit(main())

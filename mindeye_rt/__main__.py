import sys

from mindeye_rt.cli import main

sys.exit(main())

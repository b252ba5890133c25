import sys

from bodydance_export.tensorrt_build.cli import main

sys.exit(main())

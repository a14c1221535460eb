"""``python -m multitask_mnist``: the command line."""

import sys

from multitask_mnist.cli import main

sys.exit(main())

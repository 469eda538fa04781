"""`python -m gradcam_edu` and the `gradcam-edu` console script: see gradcam_edu.cli."""

import sys

from .cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())

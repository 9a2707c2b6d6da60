"""`python -m bench` from the repository root (or `python -m nanonorm.bench`)."""
import sys

from .core import main

sys.exit(main())

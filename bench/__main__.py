"""`python -m bench` from the repository root (`python -m nanonorm.bench` or `nanonorm bench` from anywhere)."""
import sys

from .core import main

sys.exit(main())

"""`python -m bench` from the repository root (`python -m nanonorm.bench` or `nanonorm bench` from anywhere)."""
import sys

from .cli import main

sys.exit(main())

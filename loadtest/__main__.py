"""`python -m loadtest [smoke|soak|step] [--host URL …]`: a gated Locust run; exits 1 with the reason."""

from __future__ import annotations

import sys

from loadtest.runner import main

if __name__ == "__main__":
    sys.exit(main())

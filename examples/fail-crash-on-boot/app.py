"""Builds fine, crashes on boot: it needs DATABASE_URL, which is never set."""

import os
import sys

if "DATABASE_URL" not in os.environ:
    sys.exit("fatal: DATABASE_URL is not set; refusing to start")

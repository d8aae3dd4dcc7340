"""Make the checkout's own packages win over any installed copy (worktrees, CI)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

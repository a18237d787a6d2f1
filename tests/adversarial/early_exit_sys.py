"""Claims success, then leaves with sys.exit(0) before the checks at the end run."""

import sys

print("ALL TESTS PASSED")
sys.exit(0)
raise AssertionError("the checks below the exit never ran")

"""Claims success, then leaves with os._exit(0) before the checks at the end run."""

import os

print("ALL TESTS PASSED", flush=True)
os._exit(0)
raise AssertionError("the checks below the exit never ran")

"""Default-box coverage analysis (see tools/analysis/default_box_coverage.py)."""

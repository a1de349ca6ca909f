"""`make bench`: render, campaign and cost benchmarks (figures, never timed tests)."""

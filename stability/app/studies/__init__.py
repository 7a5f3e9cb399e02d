"""Long numerical studies run from the command line (their results are evidence, labelled as such)."""

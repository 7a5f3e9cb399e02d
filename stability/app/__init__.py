"""App floor: the one command line, the demo, reports, reproductions and long studies. The only floor that
parses arguments, writes reports or imports ``proofs_check``."""

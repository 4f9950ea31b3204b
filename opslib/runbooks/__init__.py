"""One module per runbook: ``collect`` does the I/O, the rest is pure analysis."""

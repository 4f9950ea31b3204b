"""Pure analysis that several runbooks share (each runbook module has its own)."""

"""Local STAND-INS for hosted APIs that cannot be reached from the test machines.

They speak the shapes documented in ../shared/reference/fly-supabase.md, reject missing or
wrong tokens with the platform's error body, and record every request so tests can assert
what was sent — and that nothing mutating was.
"""

"""What the compiled kernels write per line, as numbers: flag bits, provider and level codes,
keyword actions. Kept apart from `_kernel` so that code reading them (the signal table, the
plain-Python reference) does not load numba."""

# --- flag bits (per line) -----------------------------------------------------------------
F_ERR = 1  # seed grep: error|exception|failed
F_AUTH = 2  # seed grep: auth|unauthorized|401
F_DB = 4  # seed grep: database|connection|query
F_PARSED = 8  # layout recognised (fields extracted)
F_TS = 16  # has a timestamp
F_SLOW = 32  # fast layout parse failed: Python decides (and may still parse it)
F_HIDES = 64  # a masked token holds letters beyond hex: a phrase could hide in it, so the line's
#               signal matches are not taken from (nor given to) its template's cache

# provider codes
P_NONE, P_APP, P_RUNNER, P_PROXY, P_HEALTH, P_OTHER = 0, 1, 2, 3, 4, 5
# level codes
L_NONE, L_DEBUG, L_INFO, L_WARN, L_ERROR, L_OTHER = 0, 1, 2, 3, 4, 5

# keyword actions: low 3 bits are category flags; bits 3-6 mark status triggers; bits 8+
# carry the candidate family mask (``signals.FAM_*``).
A_STATUS_METHOD = 1 << 3  # GET /path … 502
A_STATUS_KEY = 1 << 4  # status=502, "status":502
A_STATUS_PHRASE = 1 << 5  # Rails "Completed 502 Bad Gateway in 5ms", Phoenix "Sent 502 in 5ms"
A_STATUS_PIPE = 1 << 6  # Gin "[GIN] … | 502 | …"
STATUS_BITS = A_STATUS_METHOD | A_STATUS_KEY | A_STATUS_PHRASE | A_STATUS_PIPE

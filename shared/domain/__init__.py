"""Pure building blocks every service's domain code may use (no I/O)."""

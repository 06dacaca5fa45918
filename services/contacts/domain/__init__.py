"""Pure domain code of the contacts service: no I/O, no gRPC, no database."""

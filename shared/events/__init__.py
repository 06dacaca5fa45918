"""Published events as readers see them: stored events upcast to the current shape of their
message (upcast.py) and decoded into typed envelopes (envelope.py), generically from the
published protos' descriptors."""

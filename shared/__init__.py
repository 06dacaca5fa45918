"""The project's own small library: event store, projections, gRPC service kit, settings."""

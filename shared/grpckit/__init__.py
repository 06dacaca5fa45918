"""The gRPC service kit: server bootstrap, rich errors, metrics and logging interceptor."""

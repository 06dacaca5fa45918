"""What every service's application layer does the same way (commands and their retries)."""

"""The standalone project (outbox_project), set up as `make demo` does."""

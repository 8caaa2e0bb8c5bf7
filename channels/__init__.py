"""Provider adapters behind one `Channel` protocol."""

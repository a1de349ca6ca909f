"""DNS adapters (dnspython)."""

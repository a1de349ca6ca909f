"""Repositories: typed access to aggregates, written once over the DocumentStore port."""

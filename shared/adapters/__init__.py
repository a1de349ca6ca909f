"""Adapters: the ports implemented on real technology, one adapter per module."""

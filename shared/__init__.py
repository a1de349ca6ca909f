"""Mailpipe's shared package: domain, ports, services and adapters for every function."""

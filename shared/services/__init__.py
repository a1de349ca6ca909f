"""Use cases. They speak only to ports and the domain: no SDK, web framework or driver."""

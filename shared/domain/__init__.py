"""Pure domain: models, events and policies. Imports no SDK, web framework or database driver."""

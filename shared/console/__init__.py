"""The console: the dashboard app grown into a place to work (campaigns, subscribers,
templates, imports, dead letters), behind a sign-in. An entrypoint layer: every action calls
the same service the CLI and the admin API call."""

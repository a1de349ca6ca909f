"""The marketers' dashboard: a Flask app mounted at /dashboard, its charts, and the same pages
rendered as a self-contained HTML report (`mailpipe report CAMPAIGN --html FILE`)."""

"""The `mailpipe` command-line tool."""

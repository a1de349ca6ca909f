"""What function entry points share: decoding, error mapping, pages. Flask lives here only."""

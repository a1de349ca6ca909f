"""What function entry points share: decoding, error mapping, logging. Flask lives here, not in services."""

"""Local stand-ins for services that have no usable emulator here: HTTP servers that answer
the requests the official clients send, and record AND check them (paths, methods, JSON shape),
so a client or adapter that sends the wrong thing fails the test."""

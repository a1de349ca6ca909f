"""Email service providers: sending and webhook parsing, one provider per module."""

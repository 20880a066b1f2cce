"""Channel providers: the adapters that put rendered messages on the wire (SMTP, HTTP)."""

"""The panel's pages, one module per section."""

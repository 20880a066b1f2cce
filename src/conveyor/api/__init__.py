"""The HTTP API (FastAPI): admin endpoints, Segment-compatible tracking endpoints, public pages."""

"""videoid: open-source real-time video identification for trust service providers."""

__version__ = "0.1.0"

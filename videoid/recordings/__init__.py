"""Recordings, evidence and the audit log (see docs/architecture.md)."""

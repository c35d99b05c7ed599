"""Operator, supervisor and compliance consoles: HTTP handlers and Socket.IO namespace."""

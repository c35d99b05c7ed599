"""The customer's flow: invitations, HTTP handlers and the Socket.IO namespace."""

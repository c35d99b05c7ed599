"""The HTTP side's common parts: who is asking and what they sent
(:mod:`videoid.web.requests`). Each package's handlers use these, not each other's."""

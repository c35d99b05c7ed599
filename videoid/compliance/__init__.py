"""The compliance officer's console: search, evidence, playback, verification, export."""

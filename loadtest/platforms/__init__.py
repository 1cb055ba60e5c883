"""Genuinely signed (and where the platform does it, encrypted) callbacks for each platform."""

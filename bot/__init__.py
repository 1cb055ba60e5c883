"""botwatch bot: a multi-platform chatbot gateway."""

__version__ = "0.1.0"

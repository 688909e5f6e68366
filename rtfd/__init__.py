"""rtfd: real-time card fraud detection platform (native stack, CLI and shared configuration)."""

__version__ = "0.1.0"

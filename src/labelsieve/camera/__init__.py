"""Frame sources for the camera modules."""

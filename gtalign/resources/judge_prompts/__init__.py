"""Versioned judge prompts of the published GTAlign code (data, not code): see manifest.json."""

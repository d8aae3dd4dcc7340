"""symact."""

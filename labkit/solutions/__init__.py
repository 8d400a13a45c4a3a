"""Reference solutions, kept apart from the exercises so a handout can leave them out."""

"""labkit: the small package the Fast-under-load notebooks import. Nothing runs at import."""
__version__ = "0.1.0"

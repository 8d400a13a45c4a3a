"""Where the course's folders are: the repository root and the folders under it, worked out in one place."""
from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent   # labkit/ sits at the repository root (editable install)
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
DATA_DIR = REPO_ROOT / "data"
QUESTIONS_DIR = REPO_ROOT / "questions"

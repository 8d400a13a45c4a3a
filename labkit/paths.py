"""Where the course's folders are: the repository root and the folders under it, worked out in one place."""
from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent        # labkit/
REPO_ROOT = PACKAGE_DIR.parent                        # labkit/ sits at the repository root (editable install)
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
EXERCISE_DIR = NOTEBOOK_DIR / "exercises"            # the student notebooks
DATA_DIR = REPO_ROOT / "data"
QUESTIONS_DIR = REPO_ROOT / "questions"

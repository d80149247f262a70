"""Task definitions: one folder per task with its task.yaml (see evalkit/task.py)."""

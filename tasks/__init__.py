"""Task definitions, installed as `evalkit.tasks` (package data): one folder per task with its task.yaml.

Read through `evalkit.core.resources.tasks_dir()`; see evalkit/evaluation/task.py for the schema.
"""

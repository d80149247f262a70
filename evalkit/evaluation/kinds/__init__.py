"""Task kinds: the code behind task YAMLs (`kind:` picks one from `evalkit.evaluation.task.KINDS`)."""

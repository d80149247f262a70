"""Evaluation protocols: which (head, learning rate) runs a task trains (`evalkit eval --protocol`).

Kept apart from the evaluation code (no torch) so that the command line can offer the choices
without importing it.
"""

# Which (head, learning rate) runs a task trains. The reference head's numbers are the same
# maths under `sweep` and `superb` (runs train independently in one pass); `quick` is not
# comparable with them, and the leaderboard keeps it apart.
PROTOCOLS = {
    "sweep": "every head of the task at every learning rate of its grid",
    "superb": "the task's reference (SUPERB) head at every learning rate of its grid, as s3prl",
    "quick": "the reference head at the middle learning rate of its grid",
}

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

# Which learning rates the head seeds of a several-seed run train (`evalkit eval --seed-rates`).
SEED_RATES = {
    "grid": "every head seed trains the protocol's whole learning-rate grid",
    "chosen": "the first seed trains the grid; the other seeds train each head at the rate it chose on dev "
    "(the search is done once; the seeds measure the heads' spread at that rate)",
}

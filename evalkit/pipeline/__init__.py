"""`evalkit run`: the whole pipeline (profiles, plan, scheduler, twins, publishing)."""

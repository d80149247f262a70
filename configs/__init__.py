"""YAML recipes shipped with evalkit, installed as `evalkit.configs` (package data).

`pretrain/<method>-{tiny,small,base}.yaml`: the pre-training recipes `evalkit pretrain NAME` runs
(`evalkit.core.resources.pretrain_recipe`).
"""

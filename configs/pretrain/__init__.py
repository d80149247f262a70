"""Pre-training recipes: `<method>-{tiny,small,base}.yaml`, run by `evalkit pretrain`."""

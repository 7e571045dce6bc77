"""The kv-cache lab's reference solution (importable: `z2v profile kv --model reference` uses it)."""

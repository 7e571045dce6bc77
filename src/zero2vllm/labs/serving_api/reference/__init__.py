"""The serving-api lab's reference solution."""

"""Real vLLM in its own venv: install (env), serve and launch."""

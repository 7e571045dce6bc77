"""zero2vllm: track, practise and measure your way from zero to a vLLM contribution."""

__version__ = "0.1.0"

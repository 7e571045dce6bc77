"""Decode attention kernels for the mini engine: Triton on GPUs, C++ on CPUs."""

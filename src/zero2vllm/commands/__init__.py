"""CLI command modules. Each defines `register(group)`; keep module-level imports light."""

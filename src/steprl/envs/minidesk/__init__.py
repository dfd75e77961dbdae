"""envs/minidesk."""

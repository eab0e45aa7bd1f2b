"""Running jobs and sweeps: error lines, per-job skip / failure capture, checks before a sweep launches."""

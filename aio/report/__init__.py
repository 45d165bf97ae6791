"""Reports over runs and sweeps."""

"""regbench's training side: the one trainer, models, losses, data, run files."""

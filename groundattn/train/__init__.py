"""Training: one trainer on accelerate, checkpoints, schedules."""

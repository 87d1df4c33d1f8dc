"""Training mechanics shared by pretraining and fine-tuning: run folders, checkpoints, devices, schedule, loop."""

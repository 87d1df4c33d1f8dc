"""E-MIM pretraining: hybrid masks, pyramid Barlow Twins, collapse diagnostics and the training loop."""

"""What the commands run: training runs (train_cli), the automatic evaluation after training (auto_test) and the demo
(demo, demo_model). The layer above training/ and metrics/, and below the top-level scripts."""

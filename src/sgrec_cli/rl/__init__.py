"""A2PO (docs/design.md §7): rewards and group advantages as pure maths, and the RL
fine-tuning loop."""

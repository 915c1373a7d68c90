"""RetMask: preference pairs, DPO training, the long-context evaluation suite."""

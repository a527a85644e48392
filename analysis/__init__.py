"""regbench's analysis side: reads run directories (result.json, metrics.jsonl), never the trainer."""

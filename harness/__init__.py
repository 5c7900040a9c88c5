"""The shared harness: config, LLM layer, benchmarks, evaluator, optimizer interface, runner cell, CLI."""

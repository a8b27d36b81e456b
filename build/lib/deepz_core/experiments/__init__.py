"""The paper's experiments on the demo mock (issue 5): ``run_experiments`` and its sections."""

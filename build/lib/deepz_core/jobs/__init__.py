"""Long work in its own process: a training run end to end, template-fit runs, the app's queue
worker, run status for the pages and simulation jobs."""

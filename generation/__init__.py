"""Course generation: validated requests, jobs and their lifecycle, the pipeline, the runners."""

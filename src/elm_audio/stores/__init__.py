"""What persists and what guards it: the feature cache, clip digests, files safe on a shared server, process liveness, redaction, MLflow."""

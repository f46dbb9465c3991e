"""Features out of clips: batches through a front-end, in chunks shared by processes, cached."""

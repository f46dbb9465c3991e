"""One run, start to end: its plan, its features (cache or extraction), the premise test's training, what it records and prints."""

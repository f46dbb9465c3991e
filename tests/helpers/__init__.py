"""What the tests share besides fixtures: builders of audio, datasets and stores, and the original code's weights."""

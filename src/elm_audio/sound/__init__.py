"""The signal path: decoding, resampling, log-mel and MFCC in torch, the networks' inputs."""

"""Infrastructure: configuration, argument checks, the disk cache, figure style, reporting."""

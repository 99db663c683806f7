"""Layer 0: what every other layer needs and nothing in facekit provides: image loading, boxes,
names, files, threads, statistics, the exchange format, photometric transforms, shared constants,
the cache folder and verified downloads. Imports nothing from facekit outside ``core``."""

"""Image data for training and metrics: folders and LMDBs of photos (``datasets``: the paper's
preprocessing, random patches, resumable samplers, ``prepare``'s packing) and the procedural
landscapes made on the fly (``procedural``); seeds derived from tuples of integers (``seeds``)."""

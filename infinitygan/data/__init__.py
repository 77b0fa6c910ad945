"""Image data for training and metrics, one module per job: listing folders and the paper's
preprocessing (``preprocess``), a folder of photos as a dataset (``folder``), LMDB packs written by
``prepare`` and read with one shared environment per process (``lmdb_pack``), the procedural
landscapes made on the fly (``procedural``), the dataset a ``--data`` spec names (``datasets``),
random training patches (``patches``), resumable loading (``sampling``) and seeds derived from
tuples of integers (``seeds``)."""

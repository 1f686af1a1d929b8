DROP TABLE indexed_blocks;
DROP TABLE checkpoints;

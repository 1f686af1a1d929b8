DROP TABLE reputation_lenses;

-- Rows of a tree lose their places: the trigger becomes the `all` of its conditions.
ALTER TABLE trigger_conditions DROP COLUMN group_path;

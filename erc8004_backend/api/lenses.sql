-- list_lenses --
SELECT name, definition, created_at, updated_at
FROM reputation_lenses
WHERE user_id = %(user_id)s
ORDER BY name

-- get_lens --
SELECT name, definition, created_at, updated_at
FROM reputation_lenses
WHERE user_id = %(user_id)s AND name = %(name)s

-- create_lens --
-- Nothing when the name is taken or the user already keeps %(most)s lenses (two creations
-- at the same moment may both pass the count: it bounds a list, it is not a quota).
INSERT INTO reputation_lenses (user_id, name, definition)
SELECT %(user_id)s, %(name)s, %(definition)s
WHERE (SELECT count(*) FROM reputation_lenses WHERE user_id = %(user_id)s) < %(most)s
ON CONFLICT (user_id, name) DO NOTHING
RETURNING name, definition, created_at, updated_at

-- replace_lens --
UPDATE reputation_lenses
SET definition = %(definition)s
WHERE user_id = %(user_id)s AND name = %(name)s
RETURNING name, definition, created_at, updated_at

-- delete_lens --
DELETE FROM reputation_lenses
WHERE user_id = %(user_id)s AND name = %(name)s
RETURNING name

-- triggers_using_lens --
-- The user's triggers with a condition naming the lens (a reputation_threshold's
-- config.lens_name): the lens may not be deleted under them.
SELECT t.id, t.name
FROM triggers AS t
WHERE t.user_id = %(user_id)s
  AND EXISTS (SELECT FROM trigger_conditions AS c
              WHERE c.trigger_id = t.id AND c.condition_type = 'reputation_threshold'
                AND c.config ->> 'lens_name' = %(name)s)
ORDER BY t.created_at, t.id

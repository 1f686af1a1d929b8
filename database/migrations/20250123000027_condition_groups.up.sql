-- Boolean groups of trigger conditions: conditions form a tree of `all`, `any` and `not`
-- groups (erc8004_backend/triggers/conditions.py). Each condition row names its place in the
-- tree as the API's paths write it: 'any[1].all[0]' is the first child of the `all` that is
-- the second child of the top-level `any`, 'not' the child of a top-level `not`. Groups are
-- no rows of their own: every group has at least one condition, so the paths of its
-- conditions give it. Empty (every existing row): a condition of a flat list, the `all` of
-- its conditions, as before.
ALTER TABLE trigger_conditions
    ADD COLUMN group_path text NOT NULL DEFAULT ''
        CONSTRAINT trigger_conditions_group_path_check
        CHECK (group_path = ''
               OR group_path ~ '^((all|any)\[[0-9]{1,4}\]|not)(\.((all|any)\[[0-9]{1,4}\]|not))*$');

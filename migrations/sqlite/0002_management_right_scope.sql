-- A management right's path scope: where the mappings of the groups it manages may lie (such as /go/**).
-- NULL: the right lets its holders manage no mappings.
ALTER TABLE group_management_rights ADD COLUMN path_scope TEXT;

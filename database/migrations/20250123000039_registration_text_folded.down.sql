ALTER TABLE agent_registrations DROP COLUMN file_name_folded, DROP COLUMN file_description_folded;

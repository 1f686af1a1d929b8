-- set_webhook_secret --
UPDATE triggers
SET webhook_secret = %(secret)s, webhook_secret_key_id = %(key_id)s
WHERE id = %(trigger_id)s
RETURNING id

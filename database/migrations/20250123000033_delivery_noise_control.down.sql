DROP TABLE delivery_dedup;
DROP TABLE delivery_slots;

-- PostgreSQL's form of 00007_sealing_key.sql.

-- +goose Up
CREATE TABLE sealing_key (
	id     INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
	key_id TEXT    NOT NULL
);

-- +goose Down
DROP TABLE sealing_key;

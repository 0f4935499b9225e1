-- roster state, version 1. Forward migrations only: add NNN-name.sql files.

CREATE TABLE collections (
  id INTEGER PRIMARY KEY,
  rule TEXT NOT NULL,
  target TEXT NOT NULL,
  user TEXT NOT NULL,
  url TEXT NOT NULL DEFAULT '',
  sync_token TEXT NOT NULL DEFAULT '',
  synced_snapshot TEXT NOT NULL DEFAULT '',
  UNIQUE (rule, target, user)
);

-- One row per item seen in a collection, roster's own and the users' alike, so
-- that an unchanged item is never read twice.
CREATE TABLE items (
  collection_id INTEGER NOT NULL REFERENCES collections (id) ON DELETE CASCADE,
  href TEXT NOT NULL,
  etag_seen TEXT NOT NULL DEFAULT '',
  etag TEXT NOT NULL DEFAULT '',
  key TEXT,  -- source identity of a managed item; NULL for items roster does not manage
  hash TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (collection_id, href)
) WITHOUT ROWID;

CREATE INDEX items_by_key ON items (collection_id, key) WHERE key IS NOT NULL;

CREATE TABLE snapshots (
  rule TEXT PRIMARY KEY,
  fingerprint TEXT NOT NULL
);

CREATE TABLE snapshot_items (
  rule TEXT NOT NULL,
  key TEXT NOT NULL,
  hash TEXT NOT NULL,
  PRIMARY KEY (rule, key)
) WITHOUT ROWID;

CREATE TABLE runs (
  id INTEGER PRIMARY KEY,
  mode TEXT NOT NULL,
  started_at TEXT NOT NULL,
  finished_at TEXT,
  exit_code INTEGER
);

CREATE TABLE run_results (
  run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  rule TEXT NOT NULL,
  target TEXT NOT NULL,
  user TEXT NOT NULL,
  created INTEGER NOT NULL,
  updated INTEGER NOT NULL,
  deleted INTEGER NOT NULL,
  unchanged INTEGER NOT NULL,
  conflicts INTEGER NOT NULL,
  errors INTEGER NOT NULL,
  adopted INTEGER NOT NULL,
  message TEXT NOT NULL DEFAULT ''
);

CREATE INDEX run_results_by_collection ON run_results (rule, target, user, run_id);

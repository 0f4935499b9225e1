-- roster state, version 5: every personal datum sealed, lookups by keyed hash.
--
-- Target users' names, collection URLs, sync tokens and delta links, hrefs,
-- source keys, listed users' own keys, e-mail hashes and field memories, run
-- messages, snapshot entries: each is sealed (XChaCha20-Poly1305 under the state's key, bound
-- to its table, column and row; BLOB columns `*_sealed` and the former
-- names of the sealed columns) and found by a keyed BLAKE2b blind index
-- (`*_ix`), never by its plaintext. Config names (rule, target, source),
-- etags, content hashes and counts stay as they were. An empty value is
-- stored empty, not sealed.
--
-- This file renames the old tables and creates the new ones; the state
-- store's code then copies every row across, sealing it, drops the old
-- tables in the same transaction, and rebuilds the file (VACUUM) so that no
-- plaintext stays behind in free pages or the WAL.

ALTER TABLE items RENAME TO items_v4;
ALTER TABLE collections RENAME TO collections_v4;
ALTER TABLE snapshot_items RENAME TO snapshot_items_v4;
ALTER TABLE snapshots RENAME TO snapshots_v4;
ALTER TABLE run_results RENAME TO run_results_v4;
ALTER TABLE source_cursors RENAME TO source_cursors_v4;

CREATE TABLE collections (
  id INTEGER PRIMARY KEY,
  rule TEXT NOT NULL,
  target TEXT NOT NULL,
  user_ix TEXT NOT NULL,
  user BLOB NOT NULL,
  url BLOB NOT NULL DEFAULT '',
  sync_token BLOB NOT NULL DEFAULT '',
  synced_snapshot TEXT NOT NULL DEFAULT '',
  UNIQUE (rule, target, user_ix)
);

-- An item's href, source key, field memory and e-mail hashes are one sealed
-- value (`sealed`): one open per item read. `adoptable` marks the users' own
-- cards that have e-mail hashes (adoption looks those up).
CREATE TABLE items (
  collection_id INTEGER NOT NULL REFERENCES collections (id) ON DELETE CASCADE,
  href_ix TEXT NOT NULL,
  etag_seen TEXT NOT NULL DEFAULT '',
  etag TEXT NOT NULL DEFAULT '',
  key_ix TEXT,  -- NULL for items roster does not manage
  hash TEXT NOT NULL DEFAULT '',
  adoptable INTEGER NOT NULL DEFAULT 0,
  sealed BLOB NOT NULL,
  PRIMARY KEY (collection_id, href_ix)
) WITHOUT ROWID;

CREATE INDEX items_by_key_ix ON items (collection_id, key_ix) WHERE key_ix IS NOT NULL;
CREATE INDEX items_unmanaged_v5 ON items (collection_id) WHERE key_ix IS NULL AND adoptable = 1;

-- A rule's snapshot is read and written whole: its entries (key and content
-- hash, sorted by key) are one sealed value.
CREATE TABLE snapshots (
  rule TEXT PRIMARY KEY,
  fingerprint TEXT NOT NULL,
  source_version TEXT NOT NULL DEFAULT '',
  self_keys BLOB NOT NULL DEFAULT '',
  entries BLOB NOT NULL DEFAULT ''
);

CREATE TABLE run_results (
  run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  rule TEXT NOT NULL,
  target TEXT NOT NULL,
  user_ix TEXT NOT NULL,
  user BLOB NOT NULL,
  created INTEGER NOT NULL,
  updated INTEGER NOT NULL,
  deleted INTEGER NOT NULL,
  unchanged INTEGER NOT NULL,
  conflicts INTEGER NOT NULL,
  errors INTEGER NOT NULL,
  adopted INTEGER NOT NULL,
  skipped INTEGER NOT NULL DEFAULT 0,
  message BLOB NOT NULL DEFAULT ''
);

CREATE INDEX run_results_by_collection_ix ON run_results (rule, target, user_ix, run_id);

CREATE TABLE source_cursors (
  source TEXT PRIMARY KEY,
  cursor BLOB NOT NULL
);

-- What the store keeps about itself: a value sealed and a blind index made
-- under the key, to tell a wrong key from a damaged file at open; whether
-- the file still has to be rebuilt after this migration.
CREATE TABLE state_meta (
  name TEXT PRIMARY KEY,
  value BLOB NOT NULL
);
INSERT INTO state_meta (name, value) VALUES ('vacuum', 'pending');

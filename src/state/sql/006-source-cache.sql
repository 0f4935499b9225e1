-- roster state, version 6: the source cache ([state] cache = "encrypted").
--
-- Each entry is one source record as its source mapped it, with the stamp it
-- was read under: key, stamp and record sealed as one value (`sealed`, bound
-- to the source and the key's blind index), found by a keyed BLAKE2b blind
-- index of the key (`key_ix`, domain "cache-key"), never by its plaintext.
-- `read_at` (unix seconds, when the entry was read from its source) stays in
-- the clear: expiry needs it, and it tells only when a source was read.
--
-- A source's cache was made under one shape (a hash the caller computes of
-- what the records depend on: not personal, kept in the clear); a cache of
-- another shape is not used, but replaced whole.
--
-- New tables only: nothing was sealed or in the clear before, so the file
-- needs no rebuild.

CREATE TABLE source_cache (
  source TEXT NOT NULL,
  key_ix TEXT NOT NULL,
  read_at INTEGER NOT NULL,
  sealed BLOB NOT NULL,
  PRIMARY KEY (source, key_ix)
) WITHOUT ROWID;

CREATE INDEX source_cache_by_read_at ON source_cache (read_at);

CREATE TABLE source_cache_shapes (
  source TEXT PRIMARY KEY,
  shape TEXT NOT NULL
);

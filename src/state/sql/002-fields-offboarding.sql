-- roster state, version 2: field rules, adoption by e-mail, offboarding, and
-- the source version that lets a quiet run skip reading its source.

-- What roster last wrote into each keep_user field of a managed item (field ->
-- short hash), so that a user's edit on the phone is told from roster's own.
ALTER TABLE items ADD COLUMN fields TEXT NOT NULL DEFAULT '';
-- For items roster does not manage: keyed hashes of their e-mail addresses, so
-- that a person the user already has is adopted or skipped, never duplicated.
ALTER TABLE items ADD COLUMN match TEXT NOT NULL DEFAULT '';

-- A cheap fingerprint of the rule's sources and configuration as of the last
-- snapshot; equal now means the sources need not be read.
ALTER TABLE snapshots ADD COLUMN source_version TEXT NOT NULL DEFAULT '';

-- Adoption looks up a collection's unmanaged items with e-mail hashes on every
-- run that may create something; keep that a lookup, not a scan.
CREATE INDEX items_unmanaged ON items (collection_id) WHERE key IS NULL AND match != '';

-- People left alone because the user already has their own card for them.
ALTER TABLE run_results ADD COLUMN skipped INTEGER NOT NULL DEFAULT 0;

-- Users' own cards read before this version have no e-mail hashes yet: read
-- them once more (their content is unknown again), and plan every book in
-- full on the next run, so that none of them is duplicated.
UPDATE items SET etag = '' WHERE key IS NULL;
UPDATE collections SET synced_snapshot = '';

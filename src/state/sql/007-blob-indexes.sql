-- roster state, version 7: blind indexes stored as their 16 bytes.
--
-- Every `*_ix` column held a blind index as 32 hexadecimal characters; it
-- now holds the 16-byte BLOB. Each item's row and the item index carry two
-- of them, so the file shrinks by about 64 bytes per item (a fifth of a
-- sealed item), and a lookup touches fewer pages. The seals are bound to the
-- hex form (their rows name the index as text), so nothing is sealed again.
--
-- The declared column types stay TEXT: SQLite keeps a BLOB as it is in a
-- column of TEXT affinity, compares it byte by byte, and rebuilding the
-- tables only to change the word would copy every item twice. The free pages
-- left behind hold only old blind indexes (keyed hashes, no plaintext); the
-- file is rebuilt to give them back.

UPDATE collections SET user_ix = roster_unhex(user_ix);
UPDATE run_results SET user_ix = roster_unhex(user_ix);
UPDATE items SET href_ix = roster_unhex(href_ix), key_ix = roster_unhex(key_ix);
UPDATE source_cache SET key_ix = roster_unhex(key_ix);
INSERT OR REPLACE INTO state_meta (name, value) VALUES ('vacuum', 'pending');

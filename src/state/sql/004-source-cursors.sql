-- roster state, version 4: where a source that reads changes (Graph's delta
-- links) left off, so that a run whose directory reports nothing new can
-- skip reading it. One row per source; the cursor is the source's own text
-- (its delta links and the version of what it last read), never a token.
CREATE TABLE source_cursors (
  source TEXT PRIMARY KEY,
  cursor TEXT NOT NULL
);

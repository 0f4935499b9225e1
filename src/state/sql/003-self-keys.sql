-- roster state, version 3: who each listed target user is among the people.
-- A user named in a list is recognised by their own card (e-mail address or
-- account name), which needs the people read; remembering the answer lets a
-- run whose sources are unchanged skip reading them, as directory rules do.
-- One "user<TAB>key" line per user, '%' escaping tab, newline and itself; an
-- empty key means the user has no card of their own in the selection.
ALTER TABLE snapshots ADD COLUMN self_keys TEXT NOT NULL DEFAULT '';

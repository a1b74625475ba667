-- A key per send_signal call, so a send retried after a lost commit acknowledgement finds its
-- first attempt instead of storing the signal twice (a second "approve" in the mailbox would be
-- consumed by the next wait for it). NULL for signals stored by other paths.
ALTER TABLE signals ADD COLUMN send_key text;
CREATE UNIQUE INDEX signals_send_key ON signals (send_key);

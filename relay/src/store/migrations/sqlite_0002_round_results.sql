-- cohort schema version 2 (SQLite): the whole revealed result of a completed round, as the
-- JSON of core's QuestionnaireResult (counts, sums, means, standard deviations, histograms,
-- option counts, pair correlations, per-option means). Aggregates only: never an individual
-- value, share or key. NULL for running and abandoned rounds and for rounds completed before
-- version 2 (a one-question round's result is then rebuilt from its statistics columns).
ALTER TABLE rounds ADD COLUMN result TEXT;
PRAGMA user_version = 2;

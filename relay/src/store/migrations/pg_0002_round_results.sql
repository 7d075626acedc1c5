-- cohort schema version 2 (PostgreSQL): the whole revealed result of a completed round, as the
-- JSON of core's QuestionnaireResult. Aggregates only: never an individual value, share or key.
-- NULL for running and abandoned rounds and for rounds completed before version 2.
ALTER TABLE rounds ADD COLUMN result TEXT;

-- A fixed SQL workload for `dunk sandbox`'s parity runs (scripts/compat
-- sandbox, tests/cli/sandbox_programs_test.sh): tables, a generated data
-- set, indexes, joins, aggregates, window functions, JSON, a rolled-back
-- and a committed transaction, VACUUM. Its output and the database file it
-- leaves are compared with a native run.
PRAGMA journal_mode = DELETE;
CREATE TABLE city (id INTEGER PRIMARY KEY, name TEXT NOT NULL, country TEXT NOT NULL);
CREATE TABLE reading (id INTEGER PRIMARY KEY, city INTEGER REFERENCES city(id), day INTEGER, celsius REAL);
INSERT INTO city (name, country) VALUES
  ('Oslo', 'NO'), ('Lima', 'PE'), ('Pune', 'IN'), ('Kyiv', 'UA'), ('Nice', 'FR'), ('Graz', 'AT');
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 6000)
INSERT INTO reading (city, day, celsius)
  SELECT 1 + i % 6, i / 6, round(((i * 7919) % 4001) / 100.0 - 12.5, 2) FROM n;
CREATE INDEX reading_city_day ON reading (city, day);
.headers on
.mode list
SELECT count(*) AS readings, round(avg(celsius), 3) AS mean, min(celsius) AS low, max(celsius) AS high FROM reading;
SELECT c.name, count(*) AS n, round(avg(r.celsius), 3) AS mean
  FROM reading r JOIN city c ON c.id = r.city GROUP BY c.id ORDER BY mean DESC;
SELECT name, day, celsius, rank FROM (
  SELECT c.name, r.day, r.celsius, rank() OVER (PARTITION BY r.city ORDER BY r.celsius DESC, r.day) AS rank
  FROM reading r JOIN city c ON c.id = r.city) WHERE rank <= 2 ORDER BY name, rank;
SELECT json_group_array(json_object('city', name, 'country', country)) AS cities FROM (SELECT * FROM city ORDER BY name);
BEGIN;
DELETE FROM reading WHERE celsius < 0;
SELECT count(*) AS left_in_transaction FROM reading;
ROLLBACK;
BEGIN;
UPDATE reading SET celsius = celsius + 1 WHERE day % 100 = 0;
DELETE FROM reading WHERE day > 900;
COMMIT;
SELECT count(*) AS after_commit, round(sum(celsius), 2) AS total FROM reading;
VACUUM;
PRAGMA integrity_check;

#!/bin/bash
# coreutils pipelines, for `dunk sandbox`'s parity runs (scripts/compat
# sandbox, tests/cli/sandbox_programs_test.sh): on a generated 20 000-line
# text and a 5000-row CSV (awk, fixed seed), tr | sort | uniq -c | sort -n
# | head, cut, md5sum, paste with process substitution, grep, awk, split,
# xargs, cmp, tac; in the current directory.
set -u
awk 'BEGIN {
	srand(20261206)
	split("ring three sandbox policy docker kernel copy supervisor guest host", w, " ")
	for (i = 0; i < 20000; i++) {
		n = 1 + int(rand() * 11); line = ""
		for (j = 0; j < n; j++) {
			word = w[1 + int(rand() * 10)]
			if (rand() < 0.2) word = toupper(substr(word, 1, 1)) substr(word, 2)
			line = line (j ? " " : "") word
		}
		print line >"words.txt"
	}
	for (i = 0; i < 5000; i++) printf "row%d,%d,%.6f\n", i, int(rand() * 2000000) - 1000000, rand() >"data.csv"
}'
tr -cs 'A-Za-z' '\n' <words.txt | tr A-Z a-z | sort | uniq -c | sort -k1,1nr -k2 | head -n 5
sort -t, -k2,2n data.csv | cut -d, -f1 | head -n 1000 | md5sum
paste -d' ' <(cut -d, -f1 data.csv) <(cut -d, -f3 data.csv) | wc -l
grep -c -i docker words.txt
awk -F, '{ s += $2 } END { print s }' data.csv
split -l 1000 data.csv part.
ls part.* | xargs -n 1 wc -l | sort -n | tail -n 1
cat part.* | cmp - data.csv && echo rejoined
tac data.csv | sort -t, -k1,1 -u | wc -l >count.txt

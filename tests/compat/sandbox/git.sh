#!/bin/sh
# git on a generated tree, for `dunk sandbox`'s parity runs (scripts/compat
# sandbox, tests/cli/sandbox_programs_test.sh): init, add, commit, log,
# diff, a branch and a merge, in the current directory. Names and dates are
# fixed, so the commits' hashes, the output and the objects are the same
# in every run; only .git/index (inode numbers and times) differs.
set -eu
export GIT_AUTHOR_NAME=Sandbox GIT_AUTHOR_EMAIL=sandbox@example.org GIT_AUTHOR_DATE='2026-01-02T03:04:05Z'
export GIT_COMMITTER_NAME=Sandbox GIT_COMMITTER_EMAIL=sandbox@example.org GIT_COMMITTER_DATE='2026-01-02T03:04:05Z'
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null HOME=$PWD
git init -q -b main repo
cd repo
mkdir dir0 dir1 dir2 dir3 dir4
awk 'BEGIN { for (i = 0; i < 40; i++) for (j = i; j <= i * 3 + 20; j++) print "line " i ": " j >("dir" i % 5 "/file" i ".txt") }'
git add .
git commit -q -m "forty generated files"
sed -i 's/^line 7: 1/line 7: changed 1/' dir2/file7.txt
rm dir0/file10.txt
printf 'new\n' >dir4/new.txt
git add -A
git commit -q -m "a change, a removal, an addition"
git checkout -q -b topic
seq 1 5 >>dir1/file1.txt
git commit -q -am "on a branch"
git checkout -q main
git merge -q --no-edit topic
git log --stat --format='%H %an %ad %s' --date=iso-strict
git diff --stat HEAD~2 HEAD
git diff HEAD~2 HEAD -- dir2/file7.txt
git show --format='%T' -s HEAD
git ls-files | wc -l
git count-objects | cut -d, -f1
git status --short

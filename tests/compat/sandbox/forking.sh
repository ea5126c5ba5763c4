#!/bin/sh
# A shell script that forks in every way a shell does, for `dunk sandbox`'s
# parity runs (scripts/compat sandbox, tests/cli/sandbox_programs_test.sh):
# subshells, pipelines, command substitution, background jobs and `wait`
# (for all, and for one by PID, with its status), a job killed by a signal,
# xargs running two at a time, a here-document, traps, nested shells and
# exec. Its output does not depend on the order in which children finish
# (the status line dash prints for a killed job depends on when it reaps
# it: dropped).
set -u
trap 'echo "EXIT trap: status $?"' EXIT
echo "subshell: $(x=inner; echo "$x")"
( cd /; echo "subshell cwd: $(pwd)" )
echo "outer cwd is kept: $( [ "$(pwd)" != / ] && echo yes )"
n=$(seq 1 200 | sed 's/$/ apples/' | grep -c apples)
echo "pipeline count: $n"
printf '%s\n' c a b a c a | sort | uniq -c | sort -rn | head -n 2
for i in 1 2 3 4; do
	( sleep 0.$i; echo "job $i" >"job$i.out"; exit $i ) &
done
wait
cat job1.out job2.out job3.out job4.out
sh -c 'exit 7' &
pid=$!
wait $pid
echo "wait \$pid: $?"
sleep 30 &
victim=$!
kill -TERM $victim
wait $victim 2>/dev/null
echo "killed job: $?"
seq 1 12 | xargs -n 3 -P 2 sh -c 'echo $(($1 + $2 + $3))' sum | sort -n | tr '\n' ' '
echo
while read -r word count; do
	echo "read: $word=$count"
done <<END
alpha 1
beta 2
END
total=0
for f in job*.out; do total=$((total + $(wc -c <"$f"))); done
echo "bytes in job files: $total"
echo "nested: $(sh -c 'echo "$(echo deep | tr a-z A-Z)"')"
( trap 'echo "subshell got TERM"; exit 3' TERM; sh -c 'kill -TERM $PPID'; sleep 5 )
echo "trapping subshell: $?"
sh -c 'exec echo "exec replaced the shell"'
exit 5

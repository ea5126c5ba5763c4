#!/usr/bin/env bash
# dunk-sthttpd (apps/sthttpd): the privilege-separated server serves files
# signed by its callgate; a request that drives the parser's deliberate
# hole (--bug) at the key ends that request's sthread with a report, the
# key never reaches the wire, and the server serves on. The same request
# against the thread-per-connection mode puts the key on the wire: the hole
# is real, the compartment is what stops it.
#   sthttpd_test.sh SERVER PORT
set -uo pipefail
server=$1
port=$2
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2> /dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }

mkdir "$work/www"
printf 'hello from a compartment\n' > "$work/www/index.html"

# start MODE PORT: the server in the background, its key from its log.
start() {
  "$server" "$1" "$2" "$work/www" --bug 2> "$work/$1.log" &
  pids+=($!)
  for _ in $(seq 100); do
    grep -q "serving" "$work/$1.log" 2> /dev/null && break
    sleep 0.2
  done
  grep -q "serving" "$work/$1.log" || { cat "$work/$1.log"; fail "$1 server did not start"; }
  key_line=$(grep "key at" "$work/$1.log")
  key_address=$(sed 's/.*key at \(0x[0-9a-f]*\):.*/\1/' <<< "$key_line")
  key_hex=$(sed 's/.*key at 0x[0-9a-f]*: //; s/ //g' <<< "$key_line")
}

# get PORT PATH NAME: body into $work/NAME.body, headers into NAME.head.
get() {
  curl -s --path-as-is --max-time 60 -D "$work/$3.head" -o "$work/$3.body" "http://127.0.0.1:$1/$2"
}
wire_hex() { od -An -v -tx1 "$@" | tr -d ' \n'; }

start sthread "$port"
get "$port" "" first || fail "GET / failed"
grep -q "hello from a compartment" "$work/first.body" || fail "GET / did not serve index.html"
grep -qi "^X-Signature: [0-9a-f]\{16\}" "$work/first.head" || fail "no signature: $(cat "$work/first.head")"
get "$port" "missing.html" missing
grep -q "404" "$work/missing.head" || fail "a missing file was not 404"
get "$port" "../etc/passwd" traversal
grep -q "403" "$work/traversal.head" || fail "a path with .. was not refused"

# The hole, aimed at the key: the sthread faults, nothing comes back.
get "$port" "__peek/${key_address#0x}" peek
[[ ! -s $work/peek.body ]] || fail "the peek answered: $(wire_hex "$work/peek.body")"
for _ in $(seq 50); do grep -q "faulted" "$work/sthread.log" && break; sleep 0.2; done
grep -q "faulted at $key_address" "$work/sthread.log" || { cat "$work/sthread.log"; fail "no report of the fault at the key"; }
# Served on, the same signature for the same body.
get "$port" "" again || fail "GET / after the fault failed"
grep -q "hello from a compartment" "$work/again.body" || fail "the server stopped serving after the fault"
[[ $(grep -i "^X-Signature" "$work/first.head") == $(grep -i "^X-Signature" "$work/again.head") ]] ||
  fail "the signature changed"
wire=$(cat "$work"/*.head "$work"/*.body | od -An -v -tx1 | tr -d ' \n')
[[ $wire != *"$key_hex"* ]] || fail "the key was on the wire"
echo "ok: sthread mode: served, signed, the fault at the key reported, the key never sent"

# Control: a thread per connection leaks the key through the same hole.
start pthread $((port + 1))
get $((port + 1)) "__peek/${key_address#0x}" leak
[[ $(wire_hex "$work/leak.body") == "$key_hex" ]] || fail "the control did not leak: the hole is not what the test thinks"
echo "ok: pthread mode: the same request sends the key (the hole is real)"

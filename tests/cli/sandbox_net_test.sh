#!/usr/bin/env bash
# `dunk sandbox`'s network options (kvm tier): --unshare-net gives the
# program a network namespace of its own with only lo, up (it serves and
# connects to itself, a fork child reaches it, the host's loopback listener
# does not), and where none can be made (an unprivileged user without user
# namespaces) says so and leaves AF_UNIX sockets only; --allow-connect and
# --allow-bind let exactly what they name through, decided on the
# supervisor's copy of each socket address (IPv4, IPv4-mapped IPv6, connect,
# sendto, sendmsg, sendmmsg, bind, listen), in the namespace too; each
# refusal is reported; a thread flipping the address after the check never
# gets a connection through to a denied port. Bad values are refused (125).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

net_program() {
	echo "$(dirname "$DUNK")/tests/programs/sandbox_net"
}

# Two TCP ports free on 127.0.0.1 (for UDP too, most likely).
free_ports() {
	"$PYTHON" - <<-'EOF'
		import socket
		socks = [socket.socket() for _ in range(2)]
		for s in socks:
		    s.bind(("127.0.0.1", 0))
		print(" ".join(str(s.getsockname()[1]) for s in socks))
	EOF
}

# The network options alone decide: every call is the policy's to allow.
allow_all() {
	printf '{"defaultAction": "SCMP_ACT_ALLOW"}\n' >"$WORK/allow.json"
	echo "$WORK/allow.json"
}

# A directory AF_UNIX sockets can be made in (the nested test VM's /tmp, a
# 9p share, takes none).
socket_dir() {
	local dir
	dir=$(mktemp -d /dev/shm/dunk-net.XXXXXX 2>/dev/null) || dir=$WORK
	chmod 755 "$dir"
	echo "$dir"
}

# What the decisions leave when no namespace is made (run as nobody in the
# nested test VM, which refuses user namespaces): AF_UNIX only.
decision_mode_sockets() {
	cat <<-'EOF'
		AF_UNIX stream: ok
		AF_UNIX socketpair: ok
		AF_INET stream: EACCES
		AF_INET datagram: EACCES
		AF_INET6 stream: EACCES
		AF_INET raw: EACCES
		AF_INET SCTP: EACCES
		AF_NETLINK: EACCES
		AF_PACKET: EACCES
		AF_VSOCK: EACCES
	EOF
}

test_unshare_net() {
	(($(id -u) == 0)) || fail "run as root (the nested test VM's user): the namespace needs CAP_SYS_ADMIN there"
	run_cmd "$DUNK" sandbox --policy "$(allow_all)" --unshare-net -- "$(net_program)" sockets
	expect_eq "exit status" 0 "$STATUS"
	# In the namespace: IP sockets of every kind (only lo is there; SCTP as
	# the kernel has it), NETLINK_ROUTE; no packet or vsock sockets (vsock
	# reaches past any network namespace).
	local sctp
	sctp=$(grep '^AF_INET SCTP: ' <<<"$OUT") || fail "no SCTP line: [$OUT]"
	[[ $sctp =~ ^AF_INET\ SCTP:\ (ok|EPROTONOSUPPORT|ESOCKTNOSUPPORT)$ ]] || fail "SCTP: [$sctp]"
	expect_eq "sockets in the namespace" "$(
		cat <<-'EOF'
			AF_UNIX stream: ok
			AF_UNIX socketpair: ok
			AF_INET stream: ok
			AF_INET datagram: ok
			AF_INET6 stream: ok
			AF_INET raw: ok
			AF_NETLINK: ok
			AF_PACKET: EACCES
			AF_VSOCK: EACCES
		EOF
	)" "$(grep -v '^AF_INET SCTP: ' <<<"$OUT")"
	expect_report "$ERR" "dunk sandbox: denied socket(AF_PACKET, SOCK_DGRAM, 0) -> -1 EACCES by --unshare-net: an AF_PACKET socket (only AF_UNIX, AF_INET, AF_INET6 and AF_NETLINK's NETLINK_ROUTE in the namespace) "
	expect_report "$ERR" "dunk sandbox: denied socket(AF_VSOCK, SOCK_STREAM, 0) -> -1 EACCES by --unshare-net: an AF_VSOCK socket (only AF_UNIX, AF_INET, AF_INET6 and AF_NETLINK's NETLINK_ROUTE in the namespace) "
	expect_lines "reports" 2 "$ERR"
	# A real program: python's connect meets the namespace's lo, where
	# nothing listens.
	run_cmd "$DUNK" sandbox --unshare-net -- "$PYTHON" -c 'import errno, socket
try:
    socket.create_connection(("127.0.0.1", 9), timeout=5)
except OSError as e:
    print("refused:", errno.errorcode[e.errno])'
	expect_eq "python under --unshare-net" "refused: ECONNREFUSED" "$OUT"
	expect_eq "stderr" "" "$ERR"
}

# The namespace: only lo, up; the program serves and connects to itself
# over 127.0.0.1, and a fork child reaches it.
test_unshare_net_loopback() {
	local a d
	read -r a d <<<"$(free_ports)"
	# An address on the host's lo (TEST-NET-1, RFC 5737), for the namespace
	# to be told from the host's network (the nested test VM's has only lo).
	ip address add 192.0.2.77/32 dev lo || fail "cannot add 192.0.2.77 to the host's lo"
	trap 'ip address del 192.0.2.77/32 dev lo; rm -rf "$WORK"' EXIT
	run_cmd "$(net_program)" interfaces
	expect_contains "the host's lo" "IPv4 addresses: lo 127.0.0.1 lo 192.0.2.77" "$OUT"
	run_cmd "$DUNK" sandbox --unshare-net -- "$(net_program)" interfaces
	expect_eq "interfaces in the namespace" \
		"$(printf '/proc/net/dev: lo\nif_nameindex: lo\nlo: up\nIPv4 addresses: lo 127.0.0.1')" "$OUT"
	expect_eq "stderr" "" "$ERR"
	run_cmd "$DUNK" sandbox --unshare-net -- "$(net_program)" loopback "$a"
	expect_eq "exit status" 0 "$STATUS"
	expect_eq "serving and connecting over the namespace's lo" "$(
		cat <<-'EOF'
			bind 127.0.0.1:PORT: ok
			listen: ok
			connect to itself: ok
			accept: ok
			data both ways: ok
			UDP to itself: ok
			a fork child connects to the parent: ok
		EOF
	)" "$OUT"
	expect_eq "stderr" "" "$ERR"
	# Under a view as well (the view serves connect and bind itself).
	run_cmd "$DUNK" sandbox --ro-bind / / --unshare-net -- "$(net_program)" loopback "$a"
	expect_contains "under --ro-bind /" "a fork child connects to the parent: ok" "$OUT"
	expect_contains "under --ro-bind /" "data both ways: ok" "$OUT"
	# The namespace ends with the sandbox: the port is free on the host.
	run_cmd "$(net_program)" loopback "$a"
	expect_contains "the port on the host afterwards" "bind 127.0.0.1:PORT: ok" "$OUT"
}

# Rules in the namespace decide there: --allow-bind and --allow-connect
# restrict the namespace's own addresses, with the same reports; abstract
# AF_UNIX names are the namespace's own, and allowed.
test_rules_in_the_namespace() {
	local a d dir
	read -r a d <<<"$(free_ports)"
	dir=$(socket_dir)
	export SOCKET_DIR=$dir
	run_cmd "$DUNK" sandbox --policy "$(allow_all)" --allow-connect "127.0.0.1:$a" --allow-bind "$a" \
		--allow-bind "$d" -- "$(net_program)" rules "$a" "$d"
	local outside=$OUT
	rm -f "$dir"/*
	run_cmd "$DUNK" sandbox --policy "$(allow_all)" --unshare-net --allow-connect "127.0.0.1:$a" --allow-bind "$a" \
		--allow-bind "$d" -- "$(net_program)" rules "$a" "$d"
	[[ $dir == "$WORK" ]] || rm -rf "$dir"
	echo "$OUT"
	expect_eq "exit status" 0 "$STATUS"
	# The same answers as on the host's network, but for abstract names.
	expect_eq "rules in the namespace" \
		"$(sed -e 's/^bind AF_UNIX abstract: EACCES$/bind AF_UNIX abstract: ok/' \
			-e 's/^connect AF_UNIX abstract: EPERM$/connect AF_UNIX abstract: ECONNREFUSED/' <<<"$outside")" "$OUT"
	grep -q "^dunk sandbox: denied connect(.*) -> -1 EPERM by --allow-connect: no rule for 127.0.0.1 port $d \[" <<<"$ERR" ||
		fail "no report of connect D: [$ERR]"
	grep -q "^dunk sandbox: denied bind(.*) -> -1 EACCES by --allow-bind: port [0-9]* is not one \[" <<<"$ERR" ||
		fail "no report of the bind: [$ERR]"
	if grep -q "abstract" <<<"$ERR"; then fail "an abstract name refused in the namespace: [$ERR]"; fi
	expect_lines "reports (one per refusal, none for abstract names)" 10 "$ERR"
	# --allow-bind alone: other ports refused, connecting inside is free.
	run_cmd "$DUNK" sandbox --unshare-net --allow-bind "$a" -- "$(net_program)" loopback "$d"
	expect_eq "bind outside --allow-bind" "bind 127.0.0.1:PORT: EACCES" "$(head -n 1 <<<"$OUT")"
	run_cmd "$DUNK" sandbox --unshare-net --allow-bind "$a" -- "$(net_program)" loopback "$a"
	expect_contains "--allow-bind's port" "a fork child connects to the parent: ok" "$OUT"
	expect_eq "stderr" "" "$ERR"
}

# No namespace can be made (nobody in the nested test VM: no CAP_SYS_ADMIN,
# and the VM refuses user namespaces): one line says so, and the decisions
# stand in (AF_UNIX only). Where the user may make a user namespace, the
# namespace is made inside one: only lo, the program still nobody.
test_without_a_namespace() {
	cd "$WORK"
	local userns=no
	if as_unprivileged unshare --user --net true 2>/dev/null; then userns=yes; fi
	echo "user namespaces for nobody: $userns"
	run_cmd as_unprivileged "$DUNK" sandbox --policy "$(allow_all)" --unshare-net -- "$(net_program)" sockets
	expect_eq "exit status" 0 "$STATUS"
	if [[ $userns == no ]]; then
		expect_eq "sockets without a namespace" "$(decision_mode_sockets)" "$OUT"
		expect_eq "the first stderr line" \
			"dunk: sandbox: --unshare-net: no network namespace can be made here (unshare(CLONE_NEWNET): EPERM, unshare(CLONE_NEWUSER | CLONE_NEWNET): EPERM); no network by decision instead: AF_UNIX sockets only, no loopback, no abstract AF_UNIX names" \
			"$(head -n 1 <<<"$ERR")"
		expect_report "$ERR" "dunk sandbox: denied socket(AF_INET, SOCK_STREAM, 0) -> -1 EACCES by --unshare-net: an AF_INET socket "
		expect_lines "the line and the reports" 9 "$ERR"
		# The host's network, without IP sockets or netlink.
		local native
		native=$(as_unprivileged "$(net_program)" interfaces)
		run_cmd as_unprivileged "$DUNK" sandbox --unshare-net -- "$(net_program)" interfaces
		expect_eq "the host's interfaces, read from /proc" "$(head -n 1 <<<"$native")" "$(head -n 1 <<<"$OUT")"
		expect_contains "no IP socket to ask lo's flags" "lo: EACCES" "$OUT"
	else
		expect_contains "sockets in a user namespace's network namespace" "AF_INET stream: ok" "$OUT"
		run_cmd as_unprivileged "$DUNK" sandbox --unshare-net -- "$(net_program)" interfaces
		expect_eq "interfaces in the namespace" \
			"$(printf '/proc/net/dev: lo\nif_nameindex: lo\nlo: up\nIPv4 addresses: lo 127.0.0.1')" "$OUT"
		run_cmd as_unprivileged "$DUNK" sandbox --unshare-net -- /bin/sh -c 'id -u; grep ^CapEff /proc/self/status'
		expect_eq "the program's user and capabilities" "$(printf '65534\nCapEff:\t0000000000000000')" "$OUT"
	fi
}

# On the host's network with an --allow rule, TCP and UDP sockets are made
# (their addresses are decided); raw, SCTP and other families are not.
test_sockets_under_a_rule() {
	run_cmd "$DUNK" sandbox --policy "$(allow_all)" --allow-connect 127.0.0.1:9 -- "$(net_program)" sockets
	expect_eq "sockets under --allow-connect" "$(
		cat <<-'EOF'
			AF_UNIX stream: ok
			AF_UNIX socketpair: ok
			AF_INET stream: ok
			AF_INET datagram: ok
			AF_INET6 stream: ok
			AF_INET raw: EACCES
			AF_INET SCTP: EACCES
			AF_NETLINK: EACCES
			AF_PACKET: EACCES
			AF_VSOCK: EACCES
		EOF
	)" "$OUT"
	expect_report "$ERR" "dunk sandbox: denied socket(AF_INET, SOCK_RAW, 1) -> -1 EACCES by --allow-connect: an AF_INET socket of type 3, protocol 1 (only TCP and UDP ones) "
	# A real program: python's own socket call, refused as natively a
	# firewall would.
	run_cmd "$DUNK" sandbox --allow-connect 127.0.0.1:8 -- "$PYTHON" -c 'import socket
try:
    socket.create_connection(("127.0.0.1", 9), timeout=5)
except OSError as e:
    print("refused:", e.errno)'
	expect_eq "python under --allow-connect" "refused: 1" "$OUT"
}

test_allow_connect_and_bind() {
	local a d
	read -r a d <<<"$(free_ports)"
	local dir
	dir=$(socket_dir)
	export SOCKET_DIR=$dir
	run_cmd "$DUNK" sandbox --policy "$(allow_all)" --allow-connect "127.0.0.1:$a" --allow-bind "$a" \
		--allow-bind "$d" -- "$(net_program)" rules "$a" "$d"
	[[ $dir == "$WORK" ]] || rmdir "$dir"
	echo "$OUT"
	expect_eq "exit status" 0 "$STATUS"
	expect_eq "what each attempt met" "$(
		cat <<-'EOF'
			listen on A: ok
			listen on D: ok
			connect A: ok
			data over A: ok
			connect D: EPERM
			connect ::ffff:127.0.0.1 A: ok
			connect ::ffff:127.0.0.1 D: EPERM
			connect with 8 bytes of address: EINVAL
			bind UDP A: ok
			sendto A: ok
			sendto D: EPERM
			sendto D as AF_UNSPEC: EPERM
			sendmsg D: EPERM
			sendmsg A: ok
			sendmmsg A then D: EPERM
			datagrams that reached A: 2
			bind another port: EACCES
			bind port 0: ok
			listen on it: EACCES
			listen unbound: EACCES
			bind AF_UNIX path: ok
			listen AF_UNIX path: ok
			connect AF_UNIX path: ok
			bind AF_UNIX abstract: EACCES
			connect AF_UNIX abstract: EPERM
		EOF
	)" "$OUT"
	local why="--allow-connect: no rule for 127.0.0.1 port $d"
	grep -q "^dunk sandbox: denied connect(.*) -> -1 EPERM by $why \[" <<<"$ERR" || fail "no report of connect D: [$ERR]"
	grep -q "^dunk sandbox: denied sendto(.*) -> -1 EPERM by $why \[" <<<"$ERR" || fail "no report of sendto D: [$ERR]"
	grep -q "^dunk sandbox: denied sendmsg(.*) -> -1 EPERM by $why \[" <<<"$ERR" || fail "no report of sendmsg D: [$ERR]"
	grep -q "^dunk sandbox: denied sendmmsg(.*) -> -1 EPERM by $why \[" <<<"$ERR" || fail "no report of sendmmsg: [$ERR]"
	grep -q "^dunk sandbox: denied bind(.*) -> -1 EACCES by --allow-bind: port [0-9]* is not one \[" <<<"$ERR" ||
		fail "no report of the bind: [$ERR]"
	grep -q "^dunk sandbox: denied listen(.*) -> -1 EACCES by --allow-bind: listening on port [0-9]*, not one \[" <<<"$ERR" ||
		fail "no report of the listen on an ephemeral port: [$ERR]"
	grep -q "^dunk sandbox: denied connect(.*) -> -1 EPERM by --allow-connect: an abstract AF_UNIX name" <<<"$ERR" ||
		fail "no report of the abstract AF_UNIX connect: [$ERR]"
	grep -q "^dunk sandbox: denied connect(.*, 8) -> -1 EINVAL by --allow-connect: an AF_INET address of 8 bytes \[" <<<"$ERR" ||
		fail "no report of the short address: [$ERR]"
	expect_lines "reports (one per refusal)" 12 "$ERR"
}

# Under a file-system view, which serves connect, bind, sendto, sendmsg and
# sendmmsg itself (an AF_UNIX path is found in the view), the network
# options decide first, on the same copies: the same answers and reports
# as without a view.
test_network_options_under_a_view() {
	local a d dir
	read -r a d <<<"$(free_ports)"
	dir=$(socket_dir)
	export SOCKET_DIR=$dir
	local -a view=(--ro-bind / / --bind "$dir" "$dir")
	run_cmd "$DUNK" sandbox --policy "$(allow_all)" --unshare-net -- "$(net_program)" sockets
	local out=$OUT
	run_cmd "$DUNK" sandbox --policy "$(allow_all)" "${view[@]}" --unshare-net -- "$(net_program)" sockets
	expect_eq "sockets under --unshare-net and --ro-bind /" "$out" "$OUT"
	expect_contains "sockets under --unshare-net and --ro-bind /" "AF_INET stream: ok" "$OUT"
	expect_contains "sockets under --unshare-net and --ro-bind /" "AF_VSOCK: EACCES" "$OUT"
	expect_report "$ERR" "dunk sandbox: denied socket(AF_VSOCK, SOCK_STREAM, 0) -> -1 EACCES by --unshare-net: an AF_VSOCK socket (only AF_UNIX, AF_INET, AF_INET6 and AF_NETLINK's NETLINK_ROUTE in the namespace) "
	expect_lines "reports" 2 "$ERR"
	run_cmd "$DUNK" sandbox --policy "$(allow_all)" --allow-connect "127.0.0.1:$a" --allow-bind "$a" \
		--allow-bind "$d" -- "$(net_program)" rules "$a" "$d"
	out=$OUT
	rm -f "$dir"/*
	run_cmd "$DUNK" sandbox --policy "$(allow_all)" "${view[@]}" --allow-connect "127.0.0.1:$a" --allow-bind "$a" \
		--allow-bind "$d" -- "$(net_program)" rules "$a" "$d"
	echo "$OUT"
	expect_eq "exit status" 0 "$STATUS"
	expect_eq "rules under --ro-bind /" "$out" "$OUT"
	expect_contains "rules under --ro-bind /" "connect D: EPERM" "$OUT"
	expect_contains "rules under --ro-bind /" "sendmmsg A then D: EPERM" "$OUT"
	expect_contains "rules under --ro-bind /" "connect AF_UNIX path: ok" "$OUT"
	local why="--allow-connect: no rule for 127.0.0.1 port $d"
	grep -q "^dunk sandbox: denied connect(.*) -> -1 EPERM by $why \[" <<<"$ERR" || fail "no report of connect D: [$ERR]"
	grep -q "^dunk sandbox: denied sendmmsg(.*) -> -1 EPERM by $why \[" <<<"$ERR" || fail "no report of sendmmsg: [$ERR]"
	grep -q "^dunk sandbox: denied connect(.*) -> -1 EPERM by --allow-connect: an abstract AF_UNIX name" <<<"$ERR" ||
		fail "no report of the abstract AF_UNIX connect: [$ERR]"
	expect_lines "reports (one per refusal)" 12 "$ERR"
	# A real program in the view.
	run_cmd "$DUNK" sandbox "${view[@]}" --allow-connect 127.0.0.1:8 -- "$PYTHON" -c 'import socket
try:
    socket.create_connection(("127.0.0.1", 9), timeout=5)
except OSError as e:
    print("refused:", e.errno)'
	expect_eq "python under --allow-connect and --ro-bind /" "refused: 1" "$OUT"
	[[ $dir == "$WORK" ]] || rm -rf "$dir"
}

# A listener outside the sandbox: reached through the rule, and only so.
test_connect_to_a_host_listener() {
	local a d
	read -r a d <<<"$(free_ports)"
	"$PYTHON" - "$a" "$WORK/ready" <<-'EOF' &
		import socket, sys
		s = socket.socket()
		s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
		s.bind(("127.0.0.1", int(sys.argv[1])))
		s.listen(4)
		open(sys.argv[2], "w").close()
		s.settimeout(300)
		while True:
		    c, _ = s.accept()
		    c.sendall(b"hello from the host\n")
		    c.close()
	EOF
	SERVER=$!
	trap 'kill $SERVER 2>/dev/null; rm -rf "$WORK"' EXIT
	local i
	for i in $(seq 300); do
		[[ -e $WORK/ready ]] && break
		sleep 0.1
	done
	run_cmd "$DUNK" sandbox --allow-connect "127.0.0.1/8:$a" -- "$(net_program)" fetch "$a"
	expect_eq "through the rule" "$(printf 'connect: ok\nread: hello from the host')" "$OUT"
	run_cmd "$DUNK" sandbox --allow-connect "127.0.0.1:$d" -- "$(net_program)" fetch "$a"
	expect_eq "another port" "connect: EPERM" "$OUT"
	expect_eq "exit status" 1 "$STATUS"
	run_cmd "$DUNK" sandbox --allow-connect "10.0.0.0/8:*" -- "$(net_program)" fetch "$a"
	expect_eq "another network" "connect: EPERM" "$OUT"
	# From the namespace of --unshare-net the host's listener is not there,
	# whatever a rule names (its 127.0.0.1 is the namespace's own).
	run_cmd "$DUNK" sandbox --unshare-net -- "$(net_program)" fetch "$a"
	expect_eq "from the namespace" "connect: ECONNREFUSED" "$OUT"
	run_cmd "$DUNK" sandbox --unshare-net --allow-connect "127.0.0.1:$a" -- "$(net_program)" fetch "$a"
	expect_eq "from the namespace, through a rule" "connect: ECONNREFUSED" "$OUT"
	expect_eq "no report" "" "$ERR"
	# The listener was there all along.
	run_cmd "$DUNK" sandbox --allow-connect "127.0.0.1:$a" -- "$(net_program)" fetch "$a"
	expect_eq "afterwards, through the rule" "$(printf 'connect: ok\nread: hello from the host')" "$OUT"
}

# The race: a sibling thread flips the port between the allowed and the
# denied one while the program connects. The decision and the kernel read
# the same copy: no connection ever reaches the denied port. 3,000 rounds in
# the test tiers, 1,000,000 in the stress run; any count:
#   DUNK_NET_RACE_ROUNDS=1000000 ctest -R cli_sandbox_net_toctou_sockaddr
test_toctou_sockaddr() {
	local a d rounds
	rounds=$(rounds DUNK_NET_RACE_ROUNDS 3000 1000000)
	read -r a d <<<"$(free_ports)"
	run_cmd "$DUNK" sandbox --allow-connect "127.0.0.1:$a" --allow-bind "$a" --allow-bind "$d" -- \
		"$(net_program)" race "$a" "$d" "$rounds"
	echo "$OUT"
	expect_eq "exit status" 0 "$STATUS"
	[[ $OUT =~ ^rounds\ $rounds:\ to\ A\ ([0-9]+),\ to\ D\ ([0-9]+),\ refused\ ([0-9]+),\ other\ ([0-9]+),\ accepted\ on\ D\ ([0-9]+)$ ]] ||
		fail "unexpected output [$OUT]"
	local to_a=${BASH_REMATCH[1]} to_d=${BASH_REMATCH[2]} refused=${BASH_REMATCH[3]} other=${BASH_REMATCH[4]}
	local accepted_d=${BASH_REMATCH[5]}
	expect_eq "connections to the denied port" 0 "$to_d"
	expect_eq "connections the denied port's listener accepted" 0 "$accepted_d"
	expect_eq "other failures" 0 "$other"
	((to_a > 0 && refused > 0)) || fail "the race did not run both ways: $to_a allowed, $refused refused"
	expect_eq "one report per refusal" "$refused" "$(grep -c "^dunk sandbox: denied connect(.*) -> -1 EPERM by --allow-connect: no rule for 127.0.0.1 port $d \[" <<<"$ERR")"
	# A report names the address decided on, never the allowed one.
	if grep -q "^dunk sandbox: denied connect(.*port $a " <<<"$ERR"; then
		fail "a report names the allowed port"
	fi
}

test_bad_values_refused_before_running() {
	local -a cases=(
		"--allow-connect 1.2.3.4|--allow-connect: '1.2.3.4': no ':PORT' after the address"
		"--allow-connect ::1:80|an IPv6 address goes in brackets"
		"--allow-connect [::1]:0|the port '0' is not 1-65535 or *"
		"--allow-connect 10.0.0.0/33:80|the prefix '33' is not 0-32"
		"--allow-connect [::1/129]:80|the prefix '129' is not 0-128"
		"--allow-connect localhost:80|'localhost' is not an IPv4 address (names are not resolved)"
		"--allow-bind 70000|--allow-bind: '70000' is not a port 1-65535"
		"--allow-bind 0|port 0, an ephemeral one, is always allowed"
	)
	local c
	for c in "${cases[@]}"; do
		local -a opts
		read -r -a opts <<<"${c%%|*}"
		expect_refused 125 "${c#*|}" "$DUNK" sandbox "${opts[@]}" -- /bin/touch "$WORK/ran"
		[[ ! -e $WORK/ran ]] || fail "the program ran with ${c%%|*}"
	done
	# IPv6 rules in both spellings, and any port, are taken.
	run_cmd "$DUNK" sandbox --allow-connect '[::1]/128:80' --allow-connect '[2001:db8::/32]:*' --allow-connect '0.0.0.0/0:443' -- /bin/true
	expect_eq "good rules" 0 "$STATUS"
}

main "$@"

// Package cluster runs a real kvnode cluster on this machine and injects
// faults into it, for Jepsen-style tests: processes are killed, paused and
// restarted with signals, and the network between them is cut or degraded
// with the kernel's own tools.
//
// # Topology
//
// In Netns mode (root, with iproute2 installed) every node gets a network
// namespace of its own. A veth pair links the namespace (where its end is
// called eth0) to a Linux bridge in the root namespace:
//
//	          harness (root namespace), bridge address 10.A.B.254
//	                            |
//	      +-------------- bridge cj<pid>-<seq>b -------------+
//	      |                     |                            |
//	veth cj<pid>-<seq>v1   veth ...v2                   veth ...vN
//	      |                     |                            |
//	netns ...n1: eth0      netns ...n2: eth0            netns ...nN: eth0
//	kvnode n1 at 10.A.B.1  kvnode n2 at 10.A.B.2        kvnode nN at 10.A.B.N
//
// The /24 is one of 10.213.0.0 to 10.222.255.0 that nothing on the machine
// routes or has an address in yet; it is picked under a file lock, so that
// two harness processes (say, go test and a manual run) each get their own,
// and the bridge's address claims it. Every
// node listens on its own address with the same ports: HTTP 7070, raft 7071,
// gossip 7072. The harness reaches the nodes directly through the bridge's
// address. Interface, bridge and namespace names carry the harness's process
// ID and the lowest number none of its other live clusters uses, which keeps
// them unique and short enough for IFNAMSIZ (15 bytes), and lets Cleanup
// recognise what a dead harness left behind.
// When Docker runs, the root namespace forwards bridged packets through an
// iptables FORWARD chain whose policy is DROP, so Start inserts an ACCEPT rule
// for the bridge at the top of FORWARD (tagged with the same name) and Close
// deletes it.
//
// kvnode is started as "ip netns exec <ns> kvnode ...": ip enters the
// namespace and then execs kvnode, so the process the harness holds is
// kvnode itself and signals reach it directly. Each node runs in a process
// group of its own (a Ctrl-C meant for the harness does not reach it) and
// with a parent-death signal (it dies with the harness, even on a crash).
// Its data lives in Dir/n<i>/data; its output is appended to
// Dir/n<i>/kvnode.log across restarts.
//
// In Loopback mode (not root, or no ip) the nodes run on 127.0.0.1 with free
// ports; process faults work, network faults do not (their methods return an
// error that matches errors.ErrUnsupported). Auto picks Netns when it can and
// falls back to Loopback, logging why.
//
// # Faults
//
//   - Kill: SIGKILL, then reap. Restart starts the node again with the same
//     flags and data directory. Stop is the graceful form (SIGTERM).
//   - Pause / Resume: SIGSTOP / SIGCONT. Pause returns once the kernel shows
//     the process stopped.
//   - Partition / Cut / Heal: inside every namespace the INPUT chain jumps to
//     a chain of the harness's own (CAIRN-PART) that drops packets whose
//     source is a node on the other side. Dropping on input at both ends cuts
//     both directions and looks like a dead link (timeouts), not like a
//     refusal. The bridge address is never dropped, so the harness, and a
//     client pinned to an isolated node, still reach every node. Each call
//     replaces the previous set of cuts; the rules of one namespace are
//     replaced atomically with iptables-restore.
//   - Netem: "tc qdisc replace dev eth0 root netem delay ... loss ..." inside
//     the namespaces, which delays or drops what the node sends (to peers and
//     to the harness alike). Kernels without the sch_netem qdisc cannot delay
//     packets: then Supports("netem") and Supports("delay") are false and a
//     delay fails with errors.ErrUnsupported, but loss alone still works,
//     through a random-drop iptables rule on the node's input (CAIRN-LOSS).
//   - FillDisk / FreeDisk (any mode, root, Config.DiskSize): every node's
//     data directory is on a tmpfs of its own, mounted under Dir/n<i>/disk
//     with a source naming the harness's PID; FillDisk allocates a file
//     there that leaves the asked-for space free.
//
// Close resumes paused nodes, kills every node, and removes the namespaces,
// veths, bridge and FORWARD rule and unmounts the disks; Dir stays for
// inspection. Cleanup removes
// what earlier harness processes that are gone now left behind, and never
// touches the resources of a harness that is still running.
package cluster

package main

import (
	"bytes"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairndb/cairn/client"
)

// demoBasePort finds a base port whose nine demo ports are free.
func demoBasePort(t *testing.T) int {
	t.Helper()
	for range 200 {
		base := 20000 + 10*rand.IntN(3000)
		free := true
		for i := range 3 {
			for j := range 3 {
				addr := "127.0.0.1:" + strconv.Itoa(base+10*i+j)
				ln, err := net.Listen("tcp", addr)
				if err != nil {
					free = false
					continue
				}
				ln.Close()
				if pc, err := net.ListenPacket("udp", addr); err == nil {
					pc.Close()
				} else {
					free = false
				}
			}
		}
		if free {
			return base
		}
	}
	t.Fatal("no free port range for the demo")
	return 0
}

func TestDemoRunsAThreeNodeCluster(t *testing.T) {
	dc := demoConfig{exe: kvnodeBinary(t), dir: t.TempDir(), basePort: demoBasePort(t), shards: 2}
	var out bytes.Buffer
	nodes, err := startDemo(t.Context(), dc, &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	stopped := false
	defer func() {
		if !stopped {
			stopDemo(nodes, 5*time.Second)
		}
	}()
	printDemo(&out, nodes)
	for _, nd := range nodes {
		if !strings.Contains(out.String(), "http://"+nd.http) {
			t.Fatalf("the demo does not say how to reach %s:\n%s", nd.name, out.String())
		}
	}
	c1 := client.New(nodes[0].http, client.WithRetries(0, 0))
	ver, err := c1.Put(t.Context(), "greeting", []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	v, got, err := client.New(nodes[2].http).Get(t.Context(), "greeting")
	if err != nil || string(v) != "hello" || got != ver {
		t.Fatalf("read through n3: %q@%d %v, want hello@%d", v, got, err, ver)
	}
	stopped = true
	if err := stopDemo(nodes, 20*time.Second); err != nil {
		t.Fatalf("stopping the demo: %v", err)
	}
	for _, nd := range nodes {
		if code := nd.cmd.ProcessState.ExitCode(); code != 0 {
			log, _ := os.ReadFile(nd.log)
			t.Fatalf("%s exited with %d after SIGTERM; its log:\n%s", nd.name, code, log)
		}
	}
}

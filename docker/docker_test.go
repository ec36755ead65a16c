// Package docker holds the kvnode image (Dockerfile, build.sh) and its test.
package docker

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cairndb/cairn/client"
)

func docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestImageServesAndSurvivesKill builds the image with build.sh, runs a
// container, writes through its HTTP API, SIGKILLs it with docker kill,
// starts it again and reads every acknowledged write back.
func TestImageServesAndSurvivesKill(t *testing.T) {
	if err := exec.Command("docker", "info").Run(); err != nil {
		t.Skip("no Docker engine reachable (docker info failed); the image test needs one")
	}
	tag := fmt.Sprintf("cairn/kvnode:test-%d", os.Getpid())
	build := exec.Command("bash", "build.sh", tag)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build.sh: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("docker", "rmi", "-f", tag).Run() })
	name := fmt.Sprintf("cairn-test-%d", os.Getpid())
	docker(t, "run", "-d", "--name", name, "-p", "127.0.0.1::7070", tag, "--name=n1", "--shards=2")
	t.Cleanup(func() { exec.Command("docker", "rm", "-f", "-v", name).Run() })

	c := connect(t, name)
	ctx := t.Context()
	acked := map[string]uint64{}
	for i := range 50 {
		key := fmt.Sprintf("k%02d", i)
		v, err := c.Put(ctx, key, []byte("v"+key))
		if err != nil {
			t.Fatal(err)
		}
		acked[key] = v
	}
	docker(t, "kill", name) // SIGKILL
	docker(t, "start", name)
	c = connect(t, name)
	for key, v := range acked {
		val, ver, err := c.Get(ctx, key)
		if err != nil || ver != v || string(val) != "v"+key {
			t.Fatalf("%s after docker kill: %q@%d %v, want @%d", key, val, ver, err, v)
		}
	}
}

// connect waits for the container's API on its published port.
func connect(t *testing.T, name string) *client.Client {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		port := strings.TrimSpace(docker(t, "port", name, "7070/tcp"))
		if i := strings.Index(port, "\n"); i >= 0 {
			port = port[:i]
		}
		c := client.New(port, client.WithRetries(0, 0))
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		_, err := c.Cluster(ctx)
		cancel()
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			logs, _ := exec.Command("docker", "logs", name).CombinedOutput()
			t.Fatalf("container API not up: %v\n%s", err, logs)
		}
		time.Sleep(100 * time.Millisecond) // poll until the container serves
	}
}

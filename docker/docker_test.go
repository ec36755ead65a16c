// Package docker holds the kvnode image (Dockerfile, build.sh) and its test.
package docker

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairndb/cairn/client"
)

var (
	imageOnce sync.Once
	imageTag  string
	imageErr  error
)

// image builds the kvnode image with build.sh once per test run (skipping
// the test where no Docker engine runs) and removes it when the run ends.
func image(t *testing.T) string {
	t.Helper()
	if err := exec.Command("docker", "info").Run(); err != nil {
		t.Skip("no Docker engine reachable (docker info failed); the image tests need one")
	}
	imageOnce.Do(func() {
		imageTag = fmt.Sprintf("cairn/kvnode:test-%d", os.Getpid())
		if out, err := exec.Command("bash", "build.sh", imageTag).CombinedOutput(); err != nil {
			imageErr = fmt.Errorf("build.sh: %v\n%s", err, out)
		}
	})
	if imageErr != nil {
		t.Fatal(imageErr)
	}
	return imageTag
}

func TestMain(m *testing.M) {
	code := m.Run()
	if imageTag != "" {
		exec.Command("docker", "rmi", "-f", imageTag).Run()
	}
	os.Exit(code)
}

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
	tag := image(t)
	name := fmt.Sprintf("cairn-test-%d", os.Getpid())
	docker(t, "run", "-d", "--name", name, "-p", "127.0.0.1::7070", tag, "--name=n1", "--shards=2")
	t.Cleanup(func() { exec.Command("docker", "rm", "-f", "-v", name).Run() })

	c := connect(t, publishedPort(t, name))
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
	c = connect(t, publishedPort(t, name))
	for key, v := range acked {
		val, ver, err := c.Get(ctx, key)
		if err != nil || ver != v || string(val) != "v"+key {
			t.Fatalf("%s after docker kill: %q@%d %v, want @%d", key, val, ver, err, v)
		}
	}
}

// publishedPort returns the host address of a container's port 7070.
func publishedPort(t *testing.T, name string) string {
	t.Helper()
	port := strings.TrimSpace(docker(t, "port", name, "7070/tcp"))
	if i := strings.Index(port, "\n"); i >= 0 {
		port = port[:i]
	}
	return port
}

// connect waits until the node at addr serves its API and is ready.
func connect(t *testing.T, addr string) *client.Client {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	c := client.New(addr, client.WithRetries(0, 0))
	for {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		err := c.Ready(ctx)
		cancel()
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("node at %s not ready: %v", addr, err)
		}
		time.Sleep(100 * time.Millisecond) // poll until the container serves
	}
}

// TestComposeClusterSurvivesDockerKill starts the three-node cluster of
// docker-compose.yml, writes through kv1, docker kills kv2 and reads every
// acknowledged write back through kv1 and kv3, then through kv2 once it is
// started again.
func TestComposeClusterSurvivesDockerKill(t *testing.T) {
	tag := image(t)
	if _, err := exec.LookPath("docker-compose"); err != nil {
		t.Skip("docker-compose not installed; the compose test needs it")
	}
	project := fmt.Sprintf("cairntest%d", os.Getpid())
	ports := map[string]string{}
	env := append(os.Environ(), "CAIRN_IMAGE="+tag, "COMPOSE_PROJECT_NAME="+project)
	for _, kv := range []string{"KV1", "KV2", "KV3"} {
		ports[kv] = freePort(t)
		env = append(env, kv+"_HTTP="+ports[kv])
	}
	compose := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("docker-compose", append([]string{"-f", "docker-compose.yml"}, args...)...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("docker-compose %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	t.Cleanup(func() {
		if t.Failed() {
			cmd := exec.Command("docker-compose", "-f", "docker-compose.yml", "logs", "--tail", "40")
			cmd.Env = env
			out, _ := cmd.CombinedOutput()
			t.Logf("compose logs:\n%s", out)
		}
		cmd := exec.Command("docker-compose", "-f", "docker-compose.yml", "down", "-v", "-t", "5")
		cmd.Env = env
		cmd.Run()
	})
	compose("up", "-d")
	kv1 := connect(t, "127.0.0.1:"+ports["KV1"])
	connect(t, "127.0.0.1:"+ports["KV2"])
	kv3 := connect(t, "127.0.0.1:"+ports["KV3"])

	ctx := t.Context()
	acked := map[string]uint64{}
	for i := range 100 {
		key := fmt.Sprintf("k%03d", i)
		v, err := kv1.Put(ctx, key, []byte("v"+key))
		if err != nil {
			t.Fatal(err)
		}
		acked[key] = v
	}
	docker(t, "kill", project+"_kv2_1") // SIGKILL
	readAll := func(name string, c *client.Client) {
		t.Helper()
		for key, v := range acked {
			rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			val, ver, err := c.Get(rctx, key) // linearizable
			cancel()
			if err != nil || ver != v || string(val) != "v"+key {
				t.Fatalf("%s reads %s after docker kill: %q@%d %v, want @%d", name, key, val, ver, err, v)
			}
		}
	}
	readAll("kv1", kv1)
	readAll("kv3", kv3)
	// Writes go on with two of three nodes.
	for i := range 20 {
		key := fmt.Sprintf("after-%02d", i)
		v, err := kv3.Put(ctx, key, []byte("v"+key))
		if err != nil {
			t.Fatalf("write with kv2 down: %v", err)
		}
		acked[key] = v
	}
	docker(t, "start", project+"_kv2_1")
	readAll("kv2", connect(t, "127.0.0.1:"+ports["KV2"]))
}

// freePort returns a free TCP port on loopback.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}
